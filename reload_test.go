package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/wal/head"
)

// startReloader loads path as main does (ringSelf as --ring.self) and
// returns its reloader and the write handler it applies reloads to,
// logging to log.
func startReloader(t *testing.T, path, ringSelf string, log io.Writer) (*reloader, *gateway.WriteHandler) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ringSelf != "" {
		cfg.Ring.Self = ringSelf
	}
	settings, err := gateway.NewSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(log, nil))
	reg := prometheus.NewRegistry()
	hd := head.New(head.Options{Retention: time.Minute}, reg)
	writes := gateway.NewWriteHandler(settings, hd, gateway.WriteOptions{Head: hd}, logger, reg)
	rl := newReloader(path, cfg, writes, logger, reg)
	rl.ringSelf = ringSelf
	return rl, writes
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedgate.yml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tenants: [{id: a, token: token-a}]")
	rl, writes := startReloader(t, path, "", io.Discard)

	status := func(token string) int {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, nil)))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		writes.ServeHTTP(w, r)
		return w.Code
	}
	reload := func() int {
		w := httptest.NewRecorder()
		rl.serveHTTP(w, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
		return w.Code
	}
	if status("token-a") != 204 || status("token-b") != 401 {
		t.Fatal("initial tenants not in force")
	}

	write("tenants: [{id: a, token: token-a}, {id: b, token: token-b}]")
	if code := reload(); code != 200 {
		t.Fatalf("reload of a valid file answered %d", code)
	}
	if status("token-b") != 204 || testutil.ToFloat64(rl.success) != 1 {
		t.Fatal("a tenant added by reload cannot push")
	}

	write("tenants: [{id: a}]") // no token: invalid
	if code := reload(); code != 400 {
		t.Fatalf("reload of an invalid file answered %d", code)
	}
	if testutil.ToFloat64(rl.success) != 0 {
		t.Fatal("fedgate_config_last_reload_successful is not 0 after a failed reload")
	}
	if status("token-a") != 204 || status("token-b") != 204 {
		t.Fatal("a failed reload changed the running configuration")
	}
}

// TestReloadKeepsRingAndStorageAsStarted: a reload of the file fedgate
// started with, its ring.self given by --ring.self, warns of nothing; a
// changed retention is warned of, and the configuration in force (the
// status page's) keeps the one it started with.
func TestReloadKeepsRingAndStorageAsStarted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedgate.yml")
	file := func(retention string) {
		t.Helper()
		y := "tenants: [{id: a, token: token-a}]\nstorage: {retention: " + retention + "}\nring: {members: [{name: gw-0, url: 'http://127.0.0.1:1'}]}\n"
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file("1h")
	var log bytes.Buffer
	rl, _ := startReloader(t, path, "gw-0", &log)

	if err := rl.reload(); err != nil || bytes.Contains(log.Bytes(), []byte("only at restart")) {
		t.Fatalf("reload of the same file: %v; log %q", err, log.String())
	}
	file("2h")
	if err := rl.reload(); err != nil || !bytes.Contains(log.Bytes(), []byte("only at restart")) {
		t.Fatalf("reload of a new retention: %v; no warning in %q", err, log.String())
	}
	if got := rl.current().Storage.Retention; time.Duration(got) != time.Hour {
		t.Fatalf("the configuration in force has retention %v, want the 1h it started with", got)
	}
}
