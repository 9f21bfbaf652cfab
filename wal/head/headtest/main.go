package headtest

import (
	"fmt"
	"os"
	"testing"

	"github.com/fedgate/fedgate/wal/head"
)

// Main runs a package's tests, as its TestMain, and fails the package if
// they left a symbol pin held: a pin never released would keep every
// symbol table from being retired (see head.PinSymbols).
func Main(m *testing.M) {
	code := m.Run()
	if n := head.SymbolPinsHeld(); code == 0 && n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d symbol pins still held after the tests\n", n)
		code = 1
	}
	os.Exit(code)
}
