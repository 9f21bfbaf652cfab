package relabel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// AnonymizedBytes is how much of the HMAC is kept: 128 bits, 22 base64url
// characters.
const AnonymizedBytes = 16

// Anonymizer replaces label values by a keyed hash:
// base64url(HMAC-SHA256(secret, value)[:16]), no padding. The same secret
// gives the same value on every instance and across restarts; without the
// secret the original cannot be guessed by hashing candidates.
type Anonymizer struct {
	cache *lru.Cache[string, string]
	macs  sync.Pool // of hash.Hash keyed with the secret
}

// NewAnonymizer keys an Anonymizer with secret and caches up to cacheSize
// values, so that repeated values cost a lookup, not an HMAC.
func NewAnonymizer(secret []byte, cacheSize int) (*Anonymizer, error) {
	if len(secret) == 0 {
		return nil, errors.New("anonymize: empty secret")
	}
	c, err := lru.New[string, string](cacheSize)
	if err != nil {
		return nil, err
	}
	key := append([]byte(nil), secret...)
	a := &Anonymizer{cache: c}
	a.macs.New = func() any { return hmac.New(sha256.New, key) }
	return a, nil
}

// Value returns the anonymized form of v. v may alias a request buffer: it
// is copied before the cache keeps it.
func (a *Anonymizer) Value(v string) string {
	if h, ok := a.cache.Get(v); ok {
		return h
	}
	h := a.compute(v)
	a.cache.Add(strings.Clone(v), h)
	return h
}

func (a *Anonymizer) compute(v string) string {
	mac := a.macs.Get().(hash.Hash)
	mac.Reset()
	_, _ = mac.Write([]byte(v))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	a.macs.Put(mac)
	return base64.RawURLEncoding.EncodeToString(sum[:AnonymizedBytes])
}
