package gateway

import (
	"errors"
	"net/http"

	"github.com/fedgate/fedgate/gateway/remotewrite"
)

var (
	errUnauthorized     = errors.New("unauthorized")
	errUnsupportedMedia = errors.New("unsupported media type")
	errTooLarge         = errors.New("request too large")
	errInvalidSeries    = errors.New("invalid series")
	errMethod           = errors.New("method not allowed")
	// ErrUnavailable marks storage errors after which the sender should
	// retry: not ready, shutting down, a failed write.
	ErrUnavailable = errors.New("unavailable")
)

// statusOf maps an error of the write path to the HTTP status the sender
// acts on. Unknown errors are treated as unavailable, so they are retried
// rather than dropped.
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusNoContent
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, remotewrite.ErrMalformed), errors.Is(err, errInvalidSeries):
		return http.StatusBadRequest
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	default:
		return http.StatusServiceUnavailable
	}
}
