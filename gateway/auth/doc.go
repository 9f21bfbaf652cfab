// Package auth maps the credentials of a remote-write request to a tenant.
//
// A tenant is one cluster ID. A request authenticates with
// "Authorization: Bearer <token>" or with basic auth where the username is
// the tenant ID and the password is its token. Only SHA-256 digests of tokens
// are held; comparisons are constant-time, and an unknown username costs the
// same work as a known one.
//
// An Authenticator is immutable after New and safe for concurrent use; a
// config reload builds a new one.
package auth
