package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPeersOverMutualTLS: two instances whose internal listeners require
// client certificates (the --web.config.file both listeners share) forward
// to each other over https with ring.tls_config's CA and client
// certificate. A push to the instance that does not own its tenant is
// stored by the owner and served by its /federate.
func TestPeersOverMutualTLS(t *testing.T) {
	skipIfShort(t)
	pki := newTestPKI(t)
	web := pki.webConfig(t, true)
	by := pickTenants("tls", 1, 1) // one tenant owned by each
	tenants := []ringTenant{by[0][0], by[1][0]}
	internal := []string{freeAddr(t), freeAddr(t)}
	public := []string{freeAddr(t), freeAddr(t)}
	procs := make([]*process, 2)
	for i := range procs {
		dir := t.TempDir()
		secret := writeFile(t, dir, "peer.key", ringPeerSecret)
		cfg := fmt.Sprintf(`tenants:
  - {id: %s, token: %s}
  - {id: %s, token: %s}
ring:
  self: gw-%d
  secret_file: %s
  members:
    - {name: gw-0, url: 'https://%s'}
    - {name: gw-1, url: 'https://%s'}
  tls_config: {ca_file: %q, cert_file: %q, key_file: %q}
`, tenants[0].id, tenants[0].token, tenants[1].id, tenants[1].token, i, secret, internal[0], internal[1], pki.caFile, pki.clientCert, pki.clientKey)
		procs[i] = startProcess(t, fmt.Sprintf("gw-%d", i), fedgateBin,
			"--config.file="+writeFile(t, dir, "fedgate.yml", cfg),
			"--storage.path="+dir,
			"--web.config.file="+web,
			"--web.listen-address="+public[i],
			"--web.internal-listen-address="+internal[i])
	}
	client := tlsClient(t, pki.roots, &pki.client)
	for i, p := range procs {
		eventually(t, ringWait, p.name+" ready", func() error {
			resp, err := client.Get("https://" + public[i] + "/-/ready")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}, p)
	}
	// Each tenant pushes to the instance that does not own it.
	for owner, ten := range tenants {
		req, err := http.NewRequest(http.MethodPost, "https://"+public[1-owner]+"/api/v1/write", bytes.NewReader(encodeWriteRequest("tls_forwarded")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Authorization", "Bearer "+ten.token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s through gw-%d: %d %s", ten.id, 1-owner, resp.StatusCode, msg)
		}
	}
	for owner, ten := range tenants {
		resp, err := client.Get("https://" + internal[owner] + "/federate?match[]=tls_forwarded")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf(`cluster_id=%q`, ten.id); resp.StatusCode != 200 || !strings.Contains(string(body), want) || strings.Count(string(body), "tls_forwarded{") != 1 {
			t.Fatalf("gw-%d /federate: %d\n%s\nwant one series with %s", owner, resp.StatusCode, body, want)
		}
	}
}
