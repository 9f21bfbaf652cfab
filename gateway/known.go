package gateway

import (
	"github.com/cespare/xxhash/v2"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

// Known series.
//
// A sender writes a series' labels the same way every time, and most of
// what a push carries is series the head holds already. Resolving one the
// full way (resolve: cluster label out, stamp, sort, validate, pack, then
// the head hashes the packed labels and probes its table) was about half
// the CPU of a push. So the write path keys each series by a hash of its
// labels' wire bytes (remotewrite.Series.LabelBytes), and the head
// remembers, per tenant, which series Prepare resolved each key to
// (head.Memo).
//
// A key only names a candidate. resolveKnown takes it only after checking,
// label by label, that what resolve would make of the labels as sent is
// exactly the candidate's labels, valid under the current limits. A hash
// collision, a relabelled tenant, a changed cluster label or tighter
// limits all fail the check and take the full path; the memo is never
// trusted for anything the check does not prove. Tenants with a pipeline
// (allowlist, relabel_configs, anonymization) always take the full path:
// the check would have to run the pipeline, which its own memo already
// spares.

// memoKey returns the memo key of labels sent as b: never 0, which the
// head reads as no key.
func memoKey(b []byte) uint64 {
	if k := xxhash.Sum64(b); k != 0 {
		return k
	}
	return 1
}

// resolveKnown returns cand if in, the labels of a series pushed by
// tenant in wire order, resolve to exactly cand's labels under set and
// lim, which are then valid; else nil. overwritten is what resolve would
// report. A tenant with a pipeline must not come here.
//
// It proves the match without building anything: in, without the
// client's cluster label and empty-valued labels, must be cand's labels
// in the same (sorted) order, except for the stamped cluster label, which
// cand has in its place. The labels' characters, UTF-8 and uniqueness
// were checked when cand was created and hold for equal bytes; their
// lengths and number are checked here against today's limits.
func (set *Settings) resolveKnown(cand *head.Series, tenant string, lim *config.Limits, in []remotewrite.Label) (known *head.Series, overwritten bool) {
	if cand == nil {
		return nil, false
	}
	it := cand.Iter()
	kept, stamped := 0, false
	for _, l := range in {
		if l.Name == set.ClusterLabel {
			overwritten = overwritten || l.Value != tenant
			continue
		}
		if l.Value == "" && l.Name != "" { // an absent label
			continue
		}
		if !it.Next() {
			return nil, false
		}
		if it.Name == set.ClusterLabel {
			if stamped || it.Value != tenant {
				return nil, false
			}
			stamped = true
			if !it.Next() {
				return nil, false
			}
		}
		if it.Name != l.Name || it.Value != l.Value ||
			len(l.Name) > lim.MaxLabelNameLength || len(l.Value) > lim.MaxLabelValueLength {
			return nil, false
		}
		kept++
	}
	if !stamped && (!it.Next() || it.Name != set.ClusterLabel || it.Value != tenant) {
		return nil, false
	}
	if it.Next() || kept+1 > lim.MaxLabelsPerSeries ||
		len(set.ClusterLabel) > lim.MaxLabelNameLength || len(tenant) > lim.MaxLabelValueLength {
		return nil, false
	}
	return cand, overwritten
}

// namesSorted reports whether ls is in label name order, as resolveKnown
// needs it.
func namesSorted(ls []remotewrite.Label) bool {
	for i := 1; i < len(ls); i++ {
		if nameLess(ls[i].Name, ls[i-1].Name) {
			return false
		}
	}
	return true
}
