package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

type fakeReplayer struct {
	err   error
	ready bool
}

func (f fakeReplayer) Replay() error { return f.err }
func (f fakeReplayer) Ready() bool   { return f.ready }

// TestReplayStopsOnALogNotReady: corruption is logged and served past; a
// replay that leaves the log not ready (an I/O error) stops fedgate,
// which would otherwise report ready while refusing every write.
func TestReplayStopsOnALogNotReady(t *testing.T) {
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	if err := replay(fakeReplayer{ready: true}, logger); err != nil || log.Len() != 0 {
		t.Fatalf("clean replay: %v, logged %q", err, log.String())
	}
	corrupt := errors.New("segment 00000003: crc mismatch")
	if err := replay(fakeReplayer{err: corrupt, ready: true}, logger); err != nil || !strings.Contains(log.String(), "crc mismatch") {
		t.Fatalf("corruption: %v, logged %q", err, log.String())
	}
	eio := errors.New("sync 00000004: input/output error")
	if err := replay(fakeReplayer{err: eio}, logger); !errors.Is(err, eio) {
		t.Fatalf("a log left not ready: %v, want it returned", err)
	}
	if err := replay(fakeReplayer{}, logger); err == nil {
		t.Fatal("a log not ready without an error: nil")
	}
}
