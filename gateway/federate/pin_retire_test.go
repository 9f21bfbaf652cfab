package federate

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal/head"
)

// removingSource removes, after handing out a family, every series of it
// and retires what symbol tables that leaves unused: the worst a
// checkpoint running beside a scrape can do.
type removingSource struct{ *head.Head }

func (s removingSource) AppendFamily(dst []*head.Series, name string) []*head.Series {
	n := len(dst)
	dst = s.Head.AppendFamily(dst, name)
	s.Remove(dst[n:])
	head.RetireSymbolTables()
	return dst
}

// TestFederatePinsTheSeriesItWrites: the series of a family stay readable
// while it is written even if they are removed, and their symbol table
// retired, right after they were found; they are written as they were.
func TestFederatePinsTheSeriesItWrites(t *testing.T) {
	t.Cleanup(head.SwapSymbolTables(16))
	hd := newTestHead(t)
	// Pod names shared by two series each become symbols: some 20 series
	// fill the first table, the rest go to a second.
	const n = 40
	for i := range n {
		appendSeries(t, hd, now.UnixMilli(), float64(i), "__name__", fmt.Sprint("m", i/20), "i", fmt.Sprint(i), "pod", fmt.Sprint("pod-", i/2))
	}
	if tables, _, _ := head.SymbolStats(); tables < 2 {
		t.Fatalf("%d symbol tables, want the first full", tables)
	}
	h := NewHandler(removingSource{hd}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	_, body := get(t, h, false, `{__name__=~".+"}`)
	if got := strings.Count(body, "\nm"); got != n {
		t.Fatalf("%d series written, want %d:\n%s", got, n, body)
	}
	for i := range n {
		if want := fmt.Sprintf(`m%d{i="%d",instance="",pod="pod-%d"} %d `, i/20, i, i/2, i); !strings.Contains(body, want) {
			t.Fatalf("no %q in:\n%s", want, body)
		}
	}
	if hd.NumSeries() != 0 {
		t.Fatalf("%d series left", hd.NumSeries())
	}
	head.RetireSymbolTables() // the retirement waited for the scrape's pin
	if tables, _, _ := head.SymbolStats(); tables != 1 {
		t.Fatalf("%d symbol tables once the scrape is done, want the first retired", tables)
	}
}
