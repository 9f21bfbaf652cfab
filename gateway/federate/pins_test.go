package federate

import (
	"fmt"
	"os"
	"testing"

	"github.com/fedgate/fedgate/wal/head"
)

// TestMain fails the package if its tests left a symbol pin held: a pin
// never released would keep every symbol table from being retired.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := head.SymbolPinsHeld(); code == 0 && n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d symbol pins still held after the tests\n", n)
		code = 1
	}
	os.Exit(code)
}
