package main

// Helpers for the end-to-end tests: free ports, child processes with their
// logs in t.TempDir(), and polling (never a bare sleep) for HTTP endpoints and
// Prometheus queries.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// peersMissing is the failure (never skip) message when a peer is absent.
	peersMissing = "test peers missing: run 'sudo apt-get install -y prometheus victoria-metrics' (or scripts/install-test-peers.sh)"

	pollInterval = 200 * time.Millisecond
	stopGrace    = 10 * time.Second // SIGTERM, then SIGKILL after this
	logTailLines = 40
)

var httpClient = &http.Client{Timeout: 5 * time.Second}

// requirePeers fails the test when the real peer binaries are not on PATH.
func requirePeers(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"prometheus", "vmagent"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatal(peersMissing)
		}
	}
}

// freeAddr returns a 127.0.0.1:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// writeFile writes a config file into dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// process is a child process whose stdout and stderr go to one log file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited
	err  error         // the result of cmd.Wait; read it only after done
}

// startProcess starts bin and registers a cleanup that stops it (SIGTERM,
// then SIGKILL after stopGrace) and, if the test failed, logs the tail of
// its output.
func startProcess(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	// t.TempDir registers its removal before our cleanup, so it runs after it.
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s: %s\n--- last %d lines of %s:\n%s",
				name, strings.Join(cmd.Args, " "), logTailLines, logPath, tail(logPath, logTailLines))
		}
	})
	return p
}

// exited reports whether the process has exited, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitExit waits up to d for the process to exit.
func (p *process) waitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (p *process) stop() {
	if done, _ := p.exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.waitExit(stopGrace) {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// final marks a check's error as one that waiting cannot fix.
type final struct{ error }

// eventually calls check every pollInterval until it returns nil, and fails
// the test with check's last error once timeout has passed. It fails at once
// if check returns a final error or one of the watched processes exits.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error, watch ...*process) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if errors.As(err, new(final)) {
			t.Fatalf("%s: %v", what, err)
		}
		for _, p := range watch {
			if done, exitErr := p.exited(); done {
				t.Fatalf("%s: %s exited (%v) while waiting; last check: %v", what, p.name, exitErr, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// get returns the status and body of a GET.
func get(u string) (int, []byte, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitHTTP200 polls u until it answers 200.
func waitHTTP200(t *testing.T, u string, timeout time.Duration, watch ...*process) {
	t.Helper()
	eventually(t, timeout, "GET "+u, func() error {
		code, body, err := get(u)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", code, body)
		}
		return nil
	}, watch...)
}

// promSample is one element of an instant-vector query result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

func (s promSample) value() string {
	v, _ := s.Value[1].(string)
	return v
}

func (s promSample) String() string {
	return fmt.Sprintf("%v => %s", s.Metric, s.value())
}

// promQuery runs an instant query against a Prometheus server's HTTP API and
// insists on a vector result.
func promQuery(base, query string) ([]promSample, error) {
	code, body, err := get(base + "/api/v1/query?" + url.Values{"query": {query}}.Encode())
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: status %d: %w: %.200s", query, code, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: status %d: %s", query, code, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", query, r.Data.ResultType)
	}
	var v []promSample
	if err := json.Unmarshal(r.Data.Result, &v); err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	return v, nil
}

// waitQuery polls query until ok accepts the result.
func waitQuery(t *testing.T, base, query string, timeout time.Duration, ok func([]promSample) error, watch ...*process) {
	t.Helper()
	eventually(t, timeout, "query "+query, func() error {
		v, err := promQuery(base, query)
		if err != nil {
			return err
		}
		if err := ok(v); err != nil {
			return fmt.Errorf("%w; result: %s", err, summary(v))
		}
		return nil
	}, watch...)
}

// summary prints at most ten samples of a result.
func summary(v []promSample) string {
	const most = 10
	var b strings.Builder
	fmt.Fprintf(&b, "%d series", len(v))
	for i, s := range v {
		if i == most {
			b.WriteString("\n  ...")
			break
		}
		b.WriteString("\n  " + s.String())
	}
	return b.String()
}

// errEmpty is what a check returns while a query has no result yet.
var errEmpty = errors.New("no series yet")
