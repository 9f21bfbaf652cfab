package remotewrite_test

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

var capture = flag.Bool("capture", false, "record testdata/*.snappy from a real Prometheus Agent and vmagent (TestCaptureRealPayloads)")

const (
	prometheusBin = "/usr/bin/prometheus"
	vmagentBin    = "/usr/bin/vmagent"
	// capturesPerSender is how many request bodies are kept per sender.
	capturesPerSender = 2
	captureTimeout    = 2 * time.Minute
)

// TestCaptureRealPayloads records the first request bodies that a real
// Prometheus in Agent mode (scraping itself) and a real vmagent (scraping
// that Prometheus) push to a remote-write endpoint, as
// testdata/prometheus-agent-N.snappy and testdata/vmagent-N.snappy. It only
// runs with -capture:
//
//	go test -run=TestCaptureRealPayloads -capture ./gateway/remotewrite/
func TestCaptureRealPayloads(t *testing.T) {
	if !*capture {
		t.Skip("records testdata from real senders; run with -capture")
	}
	for _, bin := range []string{prometheusBin, vmagentBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("sender binary: %v", err)
		}
	}

	type push struct {
		sender string
		body   []byte
		header http.Header
	}
	pushes := make(chan push, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case pushes <- push{sender: req.URL.Path[1:], body: body, header: req.Header.Clone()}:
		default: // the test has what it needs, or is gone
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close) // registered first, so it runs after the senders are killed

	dir := t.TempDir()
	promAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/prometheus-agent
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
    metadata_config:
      send_interval: 1s
`, promAddr, srv.URL))
	writeFile(t, filepath.Join(dir, "vmagent.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus-agent
    static_configs:
      - targets: [%q]
`, promAddr))

	exited := make(chan error, 2)
	start(t, exited, dir, "prometheus", prometheusBin,
		"--enable-feature=agent",
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.agent.path="+filepath.Join(dir, "agent-wal"),
		"--web.listen-address="+promAddr,
	)
	start(t, exited, dir, "vmagent", vmagentBin,
		"-promscrape.config="+filepath.Join(dir, "vmagent.yml"),
		"-remoteWrite.url="+srv.URL+"/vmagent",
		"-remoteWrite.tmpDataPath="+filepath.Join(dir, "vmagent-data"),
		"-httpListenAddr=127.0.0.1:"+strconv.Itoa(freePort(t)),
	)

	got := map[string][][]byte{"prometheus-agent": nil, "vmagent": nil}
	deadline := time.NewTimer(captureTimeout)
	defer deadline.Stop()
	for len(got["prometheus-agent"]) < capturesPerSender || len(got["vmagent"]) < capturesPerSender {
		select {
		case p := <-pushes:
			bodies, ok := got[p.sender]
			if !ok {
				t.Fatalf("push to unexpected path /%s", p.sender)
			}
			if len(bodies) == capturesPerSender {
				continue
			}
			checkPush(t, p.sender, p.header, p.body)
			got[p.sender] = append(bodies, p.body)
		case err := <-exited:
			t.Fatalf("a sender exited early: %v (logs in %s)", err, dir)
		case <-deadline.C:
			t.Fatalf("after %v: got %d prometheus-agent and %d vmagent pushes, want %d each",
				captureTimeout, len(got["prometheus-agent"]), len(got["vmagent"]), capturesPerSender)
		}
	}

	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	for sender, bodies := range got {
		for i, body := range bodies {
			name := filepath.Join("testdata", fmt.Sprintf("%s-%d.snappy", sender, i+1))
			writeFile(t, name, string(body))
			t.Logf("wrote %s (%d bytes)", name, len(body))
		}
	}
}

// checkPush fails the test unless the push is a snappy-compressed
// protobuf WriteRequest that the reference decoder accepts.
func checkPush(t *testing.T, sender string, h http.Header, body []byte) {
	t.Helper()
	if enc := h.Get("Content-Encoding"); enc != "snappy" {
		t.Fatalf("%s: Content-Encoding %q, want snappy", sender, enc)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("%s: snappy: %v", sender, err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		t.Fatalf("%s: prompb: %v", sender, err)
	}
	if len(wr.Timeseries) == 0 && len(wr.Metadata) == 0 {
		t.Fatalf("%s: empty write request", sender)
	}
}

// start runs a sender with its output in dir/name.log, reports its exit on
// exited, and kills it when the test ends.
func start(t *testing.T, exited chan<- error, dir, name, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(done)
		exited <- fmt.Errorf("%s: %v", name, err)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = log.Close()
		if t.Failed() {
			if out, err := os.ReadFile(log.Name()); err == nil {
				t.Logf("%s log:\n%s", name, tail(out, 4000))
			}
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
