package relabel

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
)

// Reasons a pipeline drops a series; values of the reason label of
// fedgate_discarded_samples_total.
const (
	ReasonAllowlist = "allowlist"
	ReasonRelabel   = "relabel"
)

// Pipeline is one tenant's compiled allowlist, relabel rules and
// anonymized labels.
type Pipeline struct {
	tenant    string
	allow     [][]*labels.Matcher // a series is kept if any set matches
	rules     []*promrelabel.Config
	anon      *Anonymizer
	anonNames []string
	memo      *Memo // may be nil
}

// NewPipeline compiles tenant's pipeline. rules are applied in order (the
// global ones first); anonymize lists the labels whose values anon
// replaces; memo, if not nil, remembers results. It returns nil when there
// is nothing to do.
func NewPipeline(tenant string, allowlist []string, rules []*promrelabel.Config, anonymize []string, anon *Anonymizer, memo *Memo) (*Pipeline, error) {
	p := &Pipeline{tenant: tenant, rules: rules, anon: anon, anonNames: anonymize, memo: memo}
	for _, sel := range allowlist {
		ms, err := config.ParseSelector(sel)
		if err != nil {
			return nil, err
		}
		p.allow = append(p.allow, ms)
	}
	if len(p.anonNames) > 0 && anon == nil {
		return nil, errNoAnonymizer
	}
	if len(p.allow) == 0 && len(p.rules) == 0 && len(p.anonNames) == 0 {
		return nil, nil
	}
	return p, nil
}

type pipelineError string

func (e pipelineError) Error() string { return string(e) }

const errNoAnonymizer pipelineError = "labels to anonymize but no anonymizer (secret)"

// State is a caller's per-request scratch for Apply; the zero value is
// ready.
type State struct {
	lb   *labels.Builder
	sb   labels.ScratchBuilder
	base labels.Labels // the input, the builder's base; sb's buffer
	out  []remotewrite.Label
	key  []byte
}

// Memo returns the pipeline's memo, or nil. The caller looks a series up
// there first (Key, Lookup) and stores what became of it (Store): the memo
// holds final results, after stamping and validation, which are the
// caller's.
func (p *Pipeline) Memo() *Memo { return p.memo }

// Apply runs the pipeline on ls, which it may change in place. It returns
// the resulting labels (ls itself or a slice of st, with room for one more
// label) or, when the series is to be dropped, why.
func (p *Pipeline) Apply(ls []remotewrite.Label, st *State) ([]remotewrite.Label, string) {
	if len(p.allow) > 0 && !p.allowed(ls) {
		return nil, ReasonAllowlist
	}
	if len(p.rules) > 0 {
		if st.lb == nil {
			st.lb = labels.NewBuilder(labels.EmptyLabels())
		}
		// The input is the builder's base, as in promrelabel.Process: the
		// builder then lists labels as they came before those the rules
		// set, and a labelmap of two labels onto one name keeps the value
		// Prometheus keeps. Overwrite reuses sb's buffer: nothing read
		// from base outlives this call but in st.out, which the next
		// call overwrites too.
		st.sb.Reset()
		for _, l := range ls {
			st.sb.Add(l.Name, l.Value)
		}
		st.sb.Sort()
		st.sb.Overwrite(&st.base)
		st.lb.Reset(st.base)
		if !promrelabel.ProcessBuilder(st.lb, p.rules...) {
			return nil, ReasonRelabel
		}
		out := slices.Grow(st.out[:0], len(ls)+4)
		hasName := false
		st.lb.Range(func(l labels.Label) {
			out = append(out, remotewrite.Label{Name: l.Name, Value: l.Value})
			hasName = hasName || l.Name == labels.MetricName
		})
		st.out = out
		if !hasName {
			return nil, ReasonRelabel
		}
		ls = out
	}
	if len(p.anonNames) > 0 {
		for i := range ls {
			if slices.Contains(p.anonNames, ls[i].Name) {
				ls[i].Value = p.anon.Value(ls[i].Value)
			}
		}
	}
	return ls, ""
}

func (p *Pipeline) allowed(ls []remotewrite.Label) bool {
	for _, ms := range p.allow {
		if matchesAll(ms, ls) {
			return true
		}
	}
	return false
}

func matchesAll(ms []*labels.Matcher, ls []remotewrite.Label) bool {
	for _, m := range ms {
		v := ""
		for _, l := range ls {
			if l.Name == m.Name {
				v = l.Value
				break
			}
		}
		if !m.Matches(v) {
			return false
		}
	}
	return true
}
