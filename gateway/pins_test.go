package gateway

import (
	"testing"

	"github.com/fedgate/fedgate/wal/head/headtest"
)

// TestMain fails the package if its tests left a symbol pin held.
func TestMain(m *testing.M) { headtest.Main(m) }
