package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Credential is a tenant's identity and the digest of its token.
type Credential struct {
	ID          string
	TokenSHA256 [sha256.Size]byte
}

// CredentialFromToken builds a Credential holding only the digest of token.
func CredentialFromToken(id, token string) Credential {
	return Credential{ID: id, TokenSHA256: sha256.Sum256([]byte(token))}
}

// CredentialFromDigest builds a Credential from a hex SHA-256 digest.
func CredentialFromDigest(id, hexDigest string) (Credential, error) {
	c := Credential{ID: id}
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) != sha256.Size {
		return c, fmt.Errorf("tenant %q: token_sha256 must be 64 hex digits", id)
	}
	copy(c.TokenSHA256[:], b)
	return c, nil
}

// Authenticator holds the credentials of every tenant.
type Authenticator struct {
	byDigest map[[sha256.Size]byte]*Credential
	byID     map[string]*Credential
}

// New indexes the credentials. Two tenants may not share a token: a bearer
// token must name exactly one tenant.
func New(creds []Credential) (*Authenticator, error) {
	a := &Authenticator{
		byDigest: make(map[[sha256.Size]byte]*Credential, len(creds)),
		byID:     make(map[string]*Credential, len(creds)),
	}
	for i := range creds {
		c := &creds[i]
		if c.ID == "" {
			return nil, errors.New("tenant id is empty")
		}
		if _, ok := a.byID[c.ID]; ok {
			return nil, fmt.Errorf("tenant %q: duplicate id", c.ID)
		}
		if other, ok := a.byDigest[c.TokenSHA256]; ok {
			return nil, fmt.Errorf("tenants %q and %q share a token", other.ID, c.ID)
		}
		a.byID[c.ID] = c
		a.byDigest[c.TokenSHA256] = c
	}
	return a, nil
}

// unknownDigest is compared against when the username is unknown, so that
// both paths do the same work.
var unknownDigest [sha256.Size]byte

// Authenticate returns the tenant ID the request's credentials belong to.
func (a *Authenticator) Authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		d := sha256.Sum256([]byte(strings.TrimSpace(h[7:])))
		// The map is keyed by the digest, not the token: how long the lookup
		// takes tells nothing useful about the token.
		c, ok := a.byDigest[d]
		if !ok || subtle.ConstantTimeCompare(d[:], c.TokenSHA256[:]) != 1 {
			return "", false
		}
		return c.ID, true
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	d := sha256.Sum256([]byte(pass))
	want := &unknownDigest
	c, known := a.byID[user]
	if known {
		want = &c.TokenSHA256
	}
	if subtle.ConstantTimeCompare(d[:], want[:]) != 1 || !known {
		return "", false
	}
	return c.ID, true
}
