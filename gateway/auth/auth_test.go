package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"testing"
)

func newTestAuth(t *testing.T) *Authenticator {
	t.Helper()
	sum := sha256.Sum256([]byte("hashed-token"))
	fromDigest, err := CredentialFromDigest("cluster-b", hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New([]Credential{CredentialFromToken("cluster-a", "token-a"), fromDigest})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	a := newTestAuth(t)
	cases := []struct {
		name       string
		header     string
		user, pass string
		want       string
		ok         bool
	}{
		{name: "bearer", header: "Bearer token-a", want: "cluster-a", ok: true},
		{name: "bearer lower-case scheme", header: "bearer token-a", want: "cluster-a", ok: true},
		{name: "bearer of hashed token", header: "Bearer hashed-token", want: "cluster-b", ok: true},
		{name: "bearer wrong", header: "Bearer token-b"},
		{name: "bearer empty", header: "Bearer "},
		{name: "basic", user: "cluster-a", pass: "token-a", want: "cluster-a", ok: true},
		{name: "basic hashed", user: "cluster-b", pass: "hashed-token", want: "cluster-b", ok: true},
		{name: "basic other tenant's token", user: "cluster-b", pass: "token-a"},
		{name: "basic unknown user", user: "cluster-x", pass: "token-a"},
		{name: "basic empty password", user: "cluster-a"},
		{name: "none"},
		{name: "other scheme", header: "Digest abc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/v1/write", nil)
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			if c.user != "" {
				r.SetBasicAuth(c.user, c.pass)
			}
			got, ok := a.Authenticate(r)
			if ok != c.ok || got != c.want {
				t.Fatalf("Authenticate = %q, %v; want %q, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestNewRefusesSharedTokens(t *testing.T) {
	_, err := New([]Credential{CredentialFromToken("a", "same"), CredentialFromToken("b", "same")})
	if err == nil {
		t.Fatal("two tenants with one token were accepted")
	}
	if _, err := New([]Credential{CredentialFromToken("a", "x"), CredentialFromToken("a", "y")}); err == nil {
		t.Fatal("duplicate tenant id was accepted")
	}
	if _, err := CredentialFromDigest("a", "zz"); err == nil {
		t.Fatal("bad digest was accepted")
	}
}
