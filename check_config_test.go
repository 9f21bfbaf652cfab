package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/relabel"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "anon.key"), []byte("k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yml")
	if err := os.WriteFile(good, []byte(`
allowlist: ['{__name__=~"up|node_.*"}']
relabel_configs: [{action: labeldrop, regex: version}]
anonymize: {labels: [instance], secret_file: anon.key}
tenants:
  - {id: a, token: ta, relabel_configs: [{action: replace, target_label: env, replacement: "x, y"}]}
  - {id: b, token: tb}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("allowlist: ['up{']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Files config validation passes but startup refuses.
	writeFile(t, dir, "peer.key", "s3cret\n")
	badDNS := writeFile(t, dir, "bad-dns.yml", "ring: {self: gw-0, dns: nonsense, secret_file: peer.key}\n")
	badSelf := writeFile(t, dir, "bad-self.yml", "ring: {self: gw, secret_file: peer.key, members: [{name: gw.a, url: 'http://a:1'}, {name: gw.b, url: 'http://b:1'}]}\n")
	drainNoSecret := writeFile(t, dir, "drain.yml", "ring: {self: gw-1, members: [{name: gw-0, url: 'http://a:1'}]}\n")
	drain := writeFile(t, dir, "drain-secret.yml", "ring: {self: gw-1, secret_file: peer.key, members: [{name: gw-0, url: 'http://a:1'}]}\n")
	anon, _ := relabel.NewAnonymizer([]byte("k3y"), 4)
	cases := []struct {
		name string
		args []string
		code int
		out  string // in stdout, or stderr when code != 0
	}{
		{"valid file", []string{good}, 0, "OK: 2 tenants"},
		{"a series, flags after the file", []string{good, "--tenant", "a", "--series", `up{instance="h:1", version="2", cluster_id="b"}`}, 0,
			`stored as up{cluster_id="a", env="x, y", instance="` + anon.Value("h:1") + `"}`},
		{"dropped by the allowlist", []string{"--tenant=b", "--series=go_goroutines", good}, 0, "dropped (allowlist)"},
		{"refused", []string{"--tenant=b", `--series=up{__x="y", a="` + strings.Repeat("v", 3000) + `"}`, good}, 0, "refused, answered 400"},
		{"tenant needed", []string{"--series=up", good}, 1, `--tenant "" is not a tenant`},
		{"invalid file", []string{bad}, 1, "FAILED"},
		{"a DNS name discovery cannot use", []string{badDNS}, 1, `ring: dns "nonsense"`},
		{"a self naming two members", []string{badSelf}, 1, `ring: self "gw" matches both`},
		{"draining without a secret", []string{drainNoSecret}, 1, `"gw-1" is not among ring.members, so it drains into them: ring.secret_file is required`},
		{"draining with a secret", []string{drain}, 0, "OK"},
		{"no file", nil, 2, "usage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := checkConfig(c.args, &stdout, &stderr)
			got := stdout.String()
			if c.code != 0 {
				got = stderr.String()
			}
			if code != c.code || !strings.Contains(got, c.out) {
				t.Fatalf("exit %d, output:\n%s%s\nwant exit %d containing %q", code, stdout.String(), stderr.String(), c.code, c.out)
			}
		})
	}
}
