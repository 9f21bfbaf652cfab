package main

// End-to-end security tests against the real binary over real sockets: TLS
// and client certificates on both listeners (--web.config.file, the standard
// Prometheus web configuration), a real Prometheus Agent pushing over mutual
// TLS, the public listener never serving what belongs on the internal one,
// slow clients cut off by the read timeouts, and thousands of idle
// connections that do not starve real pushes.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTLSFedgate starts fedgate with TLS on both listeners and returns it
// with a client that trusts the CA and holds the CA's client certificate.
func startTLSFedgate(t *testing.T, p *testPKI, requireClientCert bool) (*fedgate, *http.Client) {
	t.Helper()
	fg := launchFedgate(t, "--web.config.file="+p.webConfig(t, requireClientCert))
	c := tlsClient(t, p.roots, &p.client)
	for _, addr := range []string{fg.public, fg.internal} {
		u := "https://" + addr + "/-/ready"
		eventually(t, 30*time.Second, "GET "+u, func() error {
			code, body, err := fetch(c, http.MethodGet, u)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d: %.200s", code, body)
			}
			return err
		}, fg.process)
	}
	return fg, c
}

// fetch returns the status and body of a bodiless request.
func fetch(c *http.Client, method, u string) (int, []byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// pushWith sends a remote-write body with a bearer token (none if empty).
func pushWith(t *testing.T, c *http.Client, writeURL, token string, body []byte) (int, error) {
	t.Helper()
	req := newWriteRequest(t, writeURL, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// federated returns the lines of /federate?match[]=selector, which must
// answer 200.
func federated(c *http.Client, base, selector string) ([]string, error) {
	code, body, err := fetch(c, http.MethodGet, base+"/federate?"+url.Values{"match[]": {selector}}.Encode())
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/federate: status %d: %.200s", code, body)
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// requireHeld waits until /federate serves series name with the cluster
// label of tenant id.
func requireHeld(t *testing.T, c *http.Client, base, name, id string, watch ...*process) {
	t.Helper()
	eventually(t, 5*time.Second, name+" in /federate", func() error {
		lines, err := federated(c, base, fmt.Sprintf("{__name__=%q}", name))
		if err != nil {
			return err
		}
		for _, l := range lines {
			if strings.HasPrefix(l, name+"{") && strings.Contains(l, fmt.Sprintf("cluster_id=%q", id)) {
				return nil
			}
		}
		return fmt.Errorf("no series %s with cluster_id=%q: %q", name, id, lines)
	}, watch...)
}

// requireNotHeld fails the test if /federate serves series name.
func requireNotHeld(t *testing.T, c *http.Client, base, name string) {
	t.Helper()
	lines, err := federated(c, base, fmt.Sprintf("{__name__=%q}", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) > 0 {
		t.Errorf("%s was stored but its push was refused: %q", name, lines)
	}
}

// TestTLSServerOnly: with a server certificate in --web.config.file both
// listeners speak only HTTPS. A push over HTTPS with a bearer token is
// stored (204) and served by /federate over HTTPS; TLS does not stand in for
// the tenant's credentials (401 without them); plain HTTP to either port is
// refused and stores nothing.
func TestTLSServerOnly(t *testing.T) {
	skipIfShort(t)
	pki := newTestPKI(t)
	fg, c := startTLSFedgate(t, pki, false)
	tenant := clusters[0]
	writeURL := "https://" + fg.public + "/api/v1/write"
	const name, plainName = "fedgate_e2e_tls_push", "fedgate_e2e_plain_http_push"

	if code, err := pushWith(t, c, writeURL, tenant.token, encodeWriteRequest(name)); err != nil || code != http.StatusNoContent {
		t.Fatalf("push over HTTPS: status %d, err %v; want 204", code, err)
	}
	if code, err := pushWith(t, c, writeURL, "", encodeWriteRequest(plainName)); err != nil || code != http.StatusUnauthorized {
		t.Errorf("push over HTTPS without a token: status %d, err %v; want 401", code, err)
	}

	code, err := pushWith(t, httpClient, "http://"+fg.public+"/api/v1/write", tenant.token, encodeWriteRequest(plainName))
	t.Logf("plain HTTP push to the TLS port: status %d, err %v", code, err)
	if err == nil && code != http.StatusBadRequest {
		t.Errorf("plain HTTP push to the TLS port: status %d, want a failure (Go's TLS server answers 400)", code)
	}
	code, body, err := fetch(httpClient, http.MethodGet, "http://"+fg.internal+"/federate?"+url.Values{"match[]": {`{__name__=~".+"}`}}.Encode())
	if err == nil && (code != http.StatusBadRequest || strings.Contains(string(body), name)) {
		t.Errorf("plain HTTP /federate on the TLS internal port: status %d: %.200s", code, body)
	}

	requireHeld(t, c, "https://"+fg.internal, name, tenant.id, fg.process)
	requireNotHeld(t, c, "https://"+fg.internal, plainName)
}

// TestTLSClientCertificates: with client_auth_type
// RequireAndVerifyClientCert, a client certificate of the configured CA plus
// the tenant's token pushes (204); the certificate alone does not
// authenticate a tenant (401); without a client certificate, or with one of
// another CA, the TLS handshake fails on both listeners and nothing is stored.
func TestTLSClientCertificates(t *testing.T) {
	skipIfShort(t)
	pki := newTestPKI(t)
	fg, c := startTLSFedgate(t, pki, true)
	tenant := clusters[0]
	writeURL := "https://" + fg.public + "/api/v1/write"
	const name, refusedName = "fedgate_e2e_mtls_push", "fedgate_e2e_mtls_refused"

	if code, err := pushWith(t, c, writeURL, tenant.token, encodeWriteRequest(name)); err != nil || code != http.StatusNoContent {
		t.Fatalf("push with client certificate and token: status %d, err %v; want 204", code, err)
	}
	if code, err := pushWith(t, c, writeURL, "", encodeWriteRequest(refusedName)); err != nil || code != http.StatusUnauthorized {
		t.Errorf("push with client certificate, no token: status %d, err %v; want 401", code, err)
	}

	refused := []struct {
		what string
		c    *http.Client
	}{
		{"no client certificate", tlsClient(t, pki.roots, nil)},
		{"client certificate of another CA", tlsClient(t, pki.roots, &pki.otherCAsClient)},
	}
	for _, r := range refused {
		code, err := pushWith(t, r.c, writeURL, tenant.token, encodeWriteRequest(refusedName))
		switch {
		case err == nil:
			t.Errorf("%s: push answered %d, want a failed TLS handshake", r.what, code)
		case !strings.Contains(err.Error(), "tls: "):
			t.Errorf("%s: push failed, but not in TLS: %v", r.what, err)
		default:
			t.Logf("%s: push refused: %v", r.what, err)
		}
		for _, path := range []string{"/metrics", "/federate?match[]=up"} {
			if code, _, err := fetch(r.c, http.MethodGet, "https://"+fg.internal+path); err == nil {
				t.Errorf("%s: internal listener answered GET %s with %d, want a failed TLS handshake", r.what, path, code)
			}
		}
	}

	requireHeld(t, c, "https://"+fg.internal, name, tenant.id, fg.process)
	requireNotHeld(t, c, "https://"+fg.internal, refusedName)
}

// tlsAgentConfig is a Prometheus Agent pushing over mutual TLS with a bearer
// token, as the README's remote_write block plus tls_config.
const tlsAgentConfig = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tls-agent-self
    static_configs:
      - targets: ['{{self}}']
remote_write:
  - url: https://{{fedgate}}/api/v1/write
    authorization:
      credentials: {{token}}
    tls_config:
      ca_file: {{ca}}
      cert_file: {{cert}}
      key_file: {{key}}
    queue_config:
      batch_send_deadline: 1s
`

// TestTLSRealPrometheusAgent: a stock Prometheus 2.x Agent with tls_config
// (CA, client certificate) and a bearer token pushes to a fedgate that
// requires client certificates; its series reach /federate (read over
// HTTPS) with its tenant's cluster label, and every push was answered 204.
func TestTLSRealPrometheusAgent(t *testing.T) {
	skipIfShort(t)
	requirePeers(t)
	pki := newTestPKI(t)
	fg, c := startTLSFedgate(t, pki, true)
	tenant := clusters[0]

	addr := freeAddr(t)
	agent := startPrometheus(t, "tls-agent", addr, fill(tlsAgentConfig,
		"self", addr, "fedgate", fg.public, "token", tenant.token,
		"ca", pki.caFile, "cert", pki.clientCert, "key", pki.clientKey), true)

	internal := "https://" + fg.internal
	eventually(t, 15*time.Second, "the Agent's up series in /federate over HTTPS", func() error {
		lines, err := federated(c, internal, `up{job="tls-agent-self"}`)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if !strings.Contains(l, fmt.Sprintf("cluster_id=%q", tenant.id)) {
				return final{fmt.Errorf("series without the tenant's cluster label: %s", l)}
			}
		}
		if len(lines) == 0 {
			return errEmpty
		}
		return nil
	}, fg.process, agent)

	code, body, err := fetch(c, http.MethodGet, internal+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics over HTTPS: status %d, err %v", code, err)
	}
	accepted := metricLines(body, "fedgate_accepted_samples_total")
	if len(accepted) != 1 || strings.HasSuffix(accepted[0], " 0") {
		t.Errorf("fedgate_accepted_samples_total: %q, want one line > 0", accepted)
	}
	requests := metricLines(body, "fedgate_write_requests_total")
	if len(requests) == 0 {
		t.Error("fedgate_write_requests_total missing")
	}
	for _, l := range requests {
		if !strings.Contains(l, `code="204"`) {
			t.Errorf("a push of the Agent was not answered 204: %s", l)
		}
	}
}

// metricLines returns the sample lines of metric in a text exposition.
func metricLines(body []byte, metric string) []string {
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(l, metric); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestPublicListenerServesOnlyPublicRoutes: the public listener, which the
// pushing clusters reach, answers 404 or 405 to everything that belongs on
// the internal listener (/federate, /metrics, POST /-/reload, the status
// page, a peer-forwarding path), also under path spellings that a router
// might normalise, and never serves their content or reloads the config.
// The internal listener serves all of them.
func TestPublicListenerServesOnlyPublicRoutes(t *testing.T) {
	skipIfShort(t)
	fg := startFedgate(t)
	const name = "fedgate_e2e_hygiene"
	if code, err := pushWith(t, httpClient, "http://"+fg.public+"/api/v1/write", clusters[0].token, encodeWriteRequest(name)); err != nil || code != http.StatusNoContent {
		t.Fatalf("push: status %d, err %v; want 204", code, err)
	}
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	federate := "/federate?" + url.Values{"match[]": {`{__name__=~".+"}`}}.Encode()

	// What only the internal listener serves, and a string its answer holds.
	// The peer-forwarding endpoint belongs in this table once it exists.
	internalRoutes := []struct{ method, path, marker string }{
		{http.MethodGet, federate, name},
		{http.MethodGet, "/metrics", "# HELP fedgate_"},
		{http.MethodPost, "/-/reload", "config reloaded"},
		{http.MethodGet, "/", "cluster label:"},
	}
	// Requests the public listener must refuse: the internal routes, their
	// other methods, spellings of them, and paths a peer endpoint might take.
	type probe struct{ method, path string }
	var probes []probe
	for _, r := range internalRoutes {
		probes = append(probes, probe{r.method, r.path}, probe{http.MethodHead, r.path})
		other := http.MethodPost
		if r.method == http.MethodPost {
			other = http.MethodGet
		}
		probes = append(probes, probe{other, r.path})
	}
	for _, p := range []string{
		"/metrics/", "/METRICS", "/federate/", "/-/reload/", "/index.html", "/status",
		"/api/v1/forward", "/api/v1/peer/write", "/-/forward", "/internal/write", "/internal/v1/append", "/peer/write", "/forward",
		"/debug/pprof/", "/api/v1/status/config",
	} {
		probes = append(probes, probe{http.MethodGet, p}, probe{http.MethodPost, p})
	}
	// Spellings Go's router answers with a redirect to the clean path; the
	// redirect must stay on this listener, where the clean path is refused.
	spellings := []string{"//metrics", "/./metrics", "/x/../metrics", "/api/v1/../../federate?match[]=up", "//-/reload", "/-/./reload"}

	metricsURL := "http://" + fg.internal + "/metrics"
	reloadedAt, err := scrapeValue(metricsURL, "fedgate_config_last_reload_success_timestamp_seconds")
	if err != nil {
		t.Fatal(err)
	}
	markers := []string{name, "# HELP", "# TYPE", "process_", "cluster label:", "config reloaded", "held series"}
	// refused checks one request to the public listener: 404 or 405 and
	// nothing of the internal content; a redirect is followed by hand if it
	// stays on this listener.
	var refused func(method, path string, redirects int)
	refused = func(method, path string, redirects int) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+fg.public+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Errorf("public %s %s: %v", method, path, err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Errorf("public %s %s: %v", method, path, err)
		}
		for _, m := range markers {
			if strings.Contains(string(body), m) {
				t.Errorf("public %s %s: answer holds internal content %q: %.200s", method, path, m, body)
			}
		}
		switch code := resp.StatusCode; {
		case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		case code/100 == 3 && redirects < 3:
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
				t.Errorf("public %s %s: redirect %d off this listener, to %q", method, path, code, loc)
				return
			}
			refused(method, loc, redirects+1)
		default:
			t.Errorf("public %s %s: status %d, want 404 or 405: %.200s", method, path, code, body)
		}
	}
	for _, p := range probes {
		refused(p.method, p.path, 0)
	}
	for _, p := range spellings {
		refused(http.MethodGet, p, 0)
		refused(http.MethodPost, p, 0)
	}
	if after, err := scrapeValue(metricsURL, "fedgate_config_last_reload_success_timestamp_seconds"); err != nil || after != reloadedAt {
		t.Errorf("the config was reloaded through the public listener (reload timestamp %v -> %v, err %v)", reloadedAt, after, err)
	}

	// The internal listener serves each of them, and reloads only on POST.
	for _, r := range internalRoutes {
		code, body, err := fetch(noRedirect, r.method, "http://"+fg.internal+r.path)
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), r.marker) {
			t.Errorf("internal %s %s: status %d, err %v, want 200 holding %q: %.200s", r.method, r.path, code, err, r.marker, body)
		}
	}
	if after, err := scrapeValue(metricsURL, "fedgate_config_last_reload_success_timestamp_seconds"); err != nil || after <= reloadedAt {
		t.Errorf("POST /-/reload on the internal listener did not reload (reload timestamp %v -> %v, err %v)", reloadedAt, after, err)
	}
	if code, _, err := fetch(noRedirect, http.MethodGet, "http://"+fg.internal+"/-/reload"); err != nil || code != http.StatusMethodNotAllowed {
		t.Errorf("internal GET /-/reload: status %d, err %v; want 405", code, err)
	}
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		for _, addr := range []string{fg.public, fg.internal} {
			if code, _, err := fetch(noRedirect, http.MethodGet, "http://"+addr+path); err != nil || code != http.StatusOK {
				t.Errorf("GET %s on %s: status %d, err %v; want 200", path, addr, code, err)
			}
		}
	}
}

// slowCutOffBound is how long a slow client may hold a connection in
// TestSlowClientsCutOff: well under the 10s default read-header timeout and
// the 1m default read timeout, so passing proves the flags took effect.
const slowCutOffBound = 8 * time.Second

// TestSlowClientsCutOff: with --web.read-header-timeout=1s and
// --web.read-timeout=2s, a client that stalls in its headers, one that
// dribbles them, and one that dribbles its body are disconnected within
// slowCutOffBound; the slow body is never stored, and a normal push still
// gets 204.
func TestSlowClientsCutOff(t *testing.T) {
	skipIfShort(t)
	fg := startFedgate(t, "--web.read-header-timeout=1s", "--web.read-timeout=2s")
	tenant := clusters[0]
	const slowName = "fedgate_e2e_slow_body"

	t.Run("stalled headers", func(t *testing.T) {
		conn := dial(t, fg.public)
		start := time.Now()
		if _, err := io.WriteString(conn, "POST /api/v1/write HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		got, err := waitClosed(conn, start.Add(slowCutOffBound))
		if err != nil {
			t.Fatalf("connection with unfinished headers still open after %v: %v", slowCutOffBound, err)
		}
		t.Logf("closed after %v; received %q", time.Since(start).Round(time.Millisecond), got)
	})

	t.Run("dribbled headers", func(t *testing.T) {
		conn := dial(t, fg.public)
		start := time.Now()
		stop := dribble(conn, []byte("POST /api/v1/write HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 1000)), 100*time.Millisecond)
		got, err := waitClosed(conn, start.Add(slowCutOffBound))
		sent := stop()
		if err != nil {
			t.Fatalf("connection dribbling headers still open after %v (%d bytes sent): %v", slowCutOffBound, sent, err)
		}
		t.Logf("closed after %v, %d header bytes sent; received %q", time.Since(start).Round(time.Millisecond), sent, got)
	})

	t.Run("dribbled body", func(t *testing.T) {
		body := encodeWriteRequest(slowName)
		conn := dial(t, fg.public)
		start := time.Now()
		head := fmt.Sprintf("POST /api/v1/write HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"+
			"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\n\r\n", fg.public, tenant.token, len(body))
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		// At 4 bytes a second the body takes far longer than the read timeout.
		stop := dribble(conn, body, 250*time.Millisecond)
		got, err := waitClosed(conn, start.Add(slowCutOffBound))
		sent := stop()
		if err != nil {
			t.Fatalf("connection dribbling its body still open after %v (%d of %d bytes sent): %v", slowCutOffBound, sent, len(body), err)
		}
		t.Logf("closed after %v, %d of %d body bytes sent; received %q", time.Since(start).Round(time.Millisecond), sent, len(body), got)
		if len(got) > 0 {
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
			if err != nil {
				t.Fatalf("unparseable answer to the slow body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				t.Errorf("slow body answered %d", resp.StatusCode)
			}
		}
	})

	// A normal push is unaffected by the short timeouts, and the slow body
	// left nothing behind.
	if code, err := pushWith(t, httpClient, "http://"+fg.public+"/api/v1/write", tenant.token, encodeWriteRequest("fedgate_e2e_after_slow")); err != nil || code != http.StatusNoContent {
		t.Errorf("normal push after the slow clients: status %d, err %v; want 204", code, err)
	}
	requireNotHeld(t, httpClient, "http://"+fg.internal, slowName)
}

// dial opens a TCP connection that the test closes at its end.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dribble writes data to conn one byte per interval in the background until
// it is all sent, a write fails or stop is called; stop returns the number
// of bytes sent.
func dribble(conn net.Conn, data []byte, interval time.Duration) (stop func() int) {
	quit := make(chan struct{})
	var sent int
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for sent < len(data) {
			if _, err := conn.Write(data[sent : sent+1]); err != nil {
				return
			}
			sent++
			select {
			case <-tick.C:
			case <-quit:
				return
			}
		}
	})
	return func() int {
		close(quit)
		wg.Wait()
		return sent
	}
}

// waitClosed reads from conn until the peer closes it (EOF or reset) and
// returns what was received; an error means the connection was still open
// at deadline.
func waitClosed(conn net.Conn, deadline time.Time) ([]byte, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return got, nil
		default:
			return got, err
		}
	}
}

// TestIdleConnectionsDoNotStarvePushes: fedgate holds 3000 idle
// connections on its public listener (some after a keep-alive request, most
// never used) and still answers a push on a new connection with 204
// promptly, and /-/ready with 200; an idle connection that speaks up is
// served; once they close, fedgate's open files fall back. The header and
// idle timeouts are raised so that none is closed for being slow while the
// test counts them (TestSlowClientsCutOff covers that).
func TestIdleConnectionsDoNotStarvePushes(t *testing.T) {
	skipIfShort(t)
	const idle, keptAlive = 3000, 300
	raiseFileLimit(t, 5000)
	fg := startFedgate(t, "--web.read-header-timeout=1m", "--web.idle-timeout=1m")
	metricsURL := "http://" + fg.internal + "/metrics"

	maxFDs, err := scrapeValue(metricsURL, "process_max_fds")
	if err != nil {
		t.Fatal(err)
	}
	base, err := scrapeValue(metricsURL, "process_open_fds")
	if err != nil {
		t.Fatal(err)
	}
	if maxFDs < base+idle+100 {
		t.Fatalf("fedgate may open %.0f files (its RLIMIT_NOFILE) and holds %.0f already: it cannot hold %d idle connections; its limit must rise, not this test's number", maxFDs, base, idle)
	}

	conns := make([]net.Conn, 0, idle)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = conns[:0]
	}
	t.Cleanup(closeAll)
	readers := make([]*bufio.Reader, keptAlive)
	for i := range idle {
		c, err := net.DialTimeout("tcp", fg.public, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d of %d: %v", i+1, idle, err)
		}
		conns = append(conns, c)
		if i < keptAlive {
			readers[i] = bufio.NewReader(c)
			if err := rawGet(c, readers[i], "/-/healthy"); err != nil {
				t.Fatalf("keep-alive request on connection %d: %v", i+1, err)
			}
		}
	}
	eventually(t, 10*time.Second, "fedgate holds the idle connections", func() error {
		n, err := scrapeValue(metricsURL, "process_open_fds")
		if err == nil && n < base+idle {
			err = fmt.Errorf("process_open_fds %.0f, want at least %.0f + %d", n, base, idle)
		}
		if err == nil {
			t.Logf("fedgate holds %.0f open files (%.0f before, limit %.0f)", n, base, maxFDs)
		}
		return err
	}, fg.process)

	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	code, err := pushWith(t, fresh, "http://"+fg.public+"/api/v1/write", clusters[0].token, encodeWriteRequest("fedgate_e2e_beside_idle"))
	if took := time.Since(start); err != nil || code != http.StatusNoContent || took > 2*time.Second {
		t.Errorf("push beside %d idle connections: status %d, err %v, took %v; want 204 within 2s", idle, code, err, took)
	}
	if code, _, err := fetch(fresh, http.MethodGet, "http://"+fg.public+"/-/ready"); err != nil || code != http.StatusOK {
		t.Errorf("/-/ready beside %d idle connections: status %d, err %v; want 200", idle, code, err)
	}
	if err := rawGet(conns[0], readers[0], "/-/ready"); err != nil {
		t.Errorf("second request on the oldest keep-alive connection: %v", err)
	}
	last := conns[idle-1]
	if err := rawGet(last, bufio.NewReader(last), "/-/ready"); err != nil {
		t.Errorf("first request on the newest idle connection: %v", err)
	}

	closeAll()
	eventually(t, 10*time.Second, "fedgate lets go of the closed connections", func() error {
		n, err := scrapeValue(metricsURL, "process_open_fds")
		if err == nil && n > base+20 {
			err = fmt.Errorf("process_open_fds %.0f, want at most %.0f + 20", n, base)
		}
		return err
	}, fg.process)
}

// rawGet sends a keep-alive GET on conn and wants 200 on a connection that
// stays open.
func rawGet(conn net.Conn, r *bufio.Reader, path string) error {
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: fedgate\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || resp.Close {
		return fmt.Errorf("status %d, close %v; want 200 and keep-alive", resp.StatusCode, resp.Close)
	}
	return nil
}

// raiseFileLimit raises this process' soft RLIMIT_NOFILE to its hard limit,
// and skips the test if that is under need.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if uint64(lim.Max) < need { // int64 on some systems
		t.Skipf("RLIMIT_NOFILE hard limit is %d; this test needs %d open files (raise it: ulimit -Hn, limits.conf or LimitNOFILE=)", lim.Max, need)
	}
	if lim.Cur >= lim.Max {
		return
	}
	old := lim
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE from %d to %d: %v", old.Cur, lim.Cur, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}
