package gateway

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

// retryAfter attaches how long a sender should wait before retrying; the
// answer carries it as Retry-After.
type retryAfter struct {
	err   error
	after time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// retryAfterSeconds returns the Retry-After value for err, or "".
func retryAfterSeconds(err error) string {
	var ra *retryAfter
	if !errors.As(err, &ra) {
		return ""
	}
	return strconv.Itoa(max(1, int(math.Ceil(ra.after.Seconds()))))
}

var (
	errUnauthorized     = errors.New("unauthorized")
	errUnsupportedMedia = errors.New("unsupported media type")
	errTooLarge         = errors.New("request too large")
	errInvalidSeries    = errors.New("invalid series")
	errMethod           = errors.New("method not allowed")
	errRateLimited      = errors.New("ingestion rate limit reached")
	errOverloaded       = errors.New("too many concurrent write requests")
	// ErrUnavailable marks storage errors after which the sender should
	// retry: not ready, shutting down, a failed write.
	ErrUnavailable = errors.New("unavailable")
)

// storeError is a failed store: its message is the sender's, which names
// neither peers nor files; its cause, the operator's, goes to the log.
type storeError struct {
	cause    error
	notReady error // the cause is the store's "not ready": said as it is
}

func (e *storeError) Error() string {
	if e.notReady != nil {
		return e.notReady.Error() + "; retry later"
	}
	return "the samples could not be stored now; retry later"
}

func (e *storeError) Unwrap() error { return e.cause }

// logged returns what the log says of err: a failed store's cause.
func logged(err error) string {
	if se, ok := errors.AsType[*storeError](err); ok {
		return "store: " + se.cause.Error()
	}
	return err.Error()
}

// statusOf maps an error of the write path to the HTTP status the sender
// acts on. Unknown errors are treated as unavailable, so they are retried
// rather than dropped.
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusNoContent
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errRateLimited), errors.Is(err, head.ErrSeriesLimit):
		return http.StatusTooManyRequests
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, remotewrite.ErrMalformed), errors.Is(err, errInvalidSeries):
		return http.StatusBadRequest
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errOverloaded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusServiceUnavailable
	}
}
