package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPWhileStartingDoesNotKill: a SIGHUP that arrives while fedgate
// waits for a first DNS answer is caught, not the signal's default action
// (which ends the process); a SIGTERM then stops the wait.
func TestSIGHUPWhileStartingDoesNotKill(t *testing.T) {
	skipIfShort(t)
	dir := t.TempDir()
	secret := writeFile(t, dir, "peer.key", "s3cret\n")
	cfg := "tenants: [{id: a, token: ta}]\nring: {self: gw-0, dns: 'fedgate-members.invalid:9096', secret_file: " + secret + "}\n"
	p := startProcess(t, "fedgate", fedgateBin,
		"--config.file="+writeFile(t, dir, "fedgate.yml", cfg),
		"--storage.path="+dir,
		"--web.listen-address="+freeAddr(t),
		"--web.internal-listen-address="+freeAddr(t))
	eventually(t, 30*time.Second, "fedgate waits for a DNS answer", func() error {
		b, err := os.ReadFile(p.log)
		if err != nil || !strings.Contains(string(b), "waiting for a DNS answer") {
			return errors.New("not waiting yet")
		}
		return nil
	}, p)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !p.waitExit(stopGrace) {
		t.Fatal("fedgate did not stop after SIGTERM")
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("fedgate was killed by %v", ws.Signal())
		}
	}
	if b, _ := os.ReadFile(p.log); !strings.Contains(string(b), "before shutdown") {
		t.Fatalf("fedgate did not end its wait for SIGTERM:\n%s", b)
	}
}
