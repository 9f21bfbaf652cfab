package gateway

import (
	"net/http"
	"sync/atomic"
)

// Health serves /-/healthy and /-/ready. Ready answers 503 until SetReady
// is called, and again after SetNotReady (at shutdown).
type Health struct {
	ready atomic.Bool
}

// SetReady marks the process ready to take writes.
func (h *Health) SetReady() { h.ready.Store(true) }

// SetNotReady marks the process as no longer taking writes.
func (h *Health) SetNotReady() { h.ready.Store(false) }

// Ready reports whether the process takes writes.
func (h *Health) Ready() bool { return h.ready.Load() }

// Healthy answers 200 while the process serves at all.
func (h *Health) Healthy(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("fedgate is Healthy.\n"))
}

// ReadyHandler answers 200 when ready and 503 otherwise.
func (h *Health) ReadyHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !h.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("fedgate is not ready.\n"))
		return
	}
	_, _ = w.Write([]byte("fedgate is Ready.\n"))
}
