package config

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// DefaultClusterLabel is the label stamped on every series when the file
// does not name one.
const DefaultClusterLabel = "cluster_id"

// File is the whole configuration file.
type File struct {
	ClusterLabel string   `yaml:"cluster_label"`
	Tenants      []Tenant `yaml:"tenants"`
	Limits       Limits   `yaml:"limits"`
	Storage      Storage  `yaml:"storage"`
	Ring         Ring     `yaml:"ring"`

	// Allowlist holds series selectors: a series is kept if any matches;
	// empty keeps everything.
	Allowlist []string `yaml:"allowlist"`
	// RelabelConfigs apply to every tenant, before the tenant's own.
	RelabelConfigs []*relabel.Config `yaml:"relabel_configs"`
	Anonymize      Anonymize         `yaml:"anonymize"`
	// RelabelCacheSize is how many series' pipeline results (allowlist,
	// relabel, anonymize) are remembered, so that the rules run once per
	// series rather than once per sample; 0 turns the cache off.
	RelabelCacheSize int `yaml:"relabel_cache_size"`
}

// Anonymize names labels whose values are replaced by a keyed hash.
type Anonymize struct {
	Labels     []string `yaml:"labels"`
	SecretFile string   `yaml:"secret_file"`
	// Secret is the content of SecretFile, read by Load.
	Secret []byte `yaml:"-"`
}

// TenantAnonymize overrides, for one tenant, which labels are anonymized.
type TenantAnonymize struct {
	Labels []string `yaml:"labels"`
}

// Tenant is one cluster allowed to push. Exactly one of Token and
// TokenSHA256 is set.
type Tenant struct {
	ID          string `yaml:"id"`
	Token       string `yaml:"token"`
	TokenSHA256 string `yaml:"token_sha256"`

	// LimitsOverride holds the tenant's `limits` block as written; Load
	// merges it over the global limits into Limits.
	LimitsOverride yaml.Node `yaml:"limits"`
	Limits         Limits    `yaml:"-"`

	// RelabelConfigs apply after the global ones, to this tenant only.
	RelabelConfigs []*relabel.Config `yaml:"relabel_configs"`
	// Anonymize, when set, replaces the global list of anonymized labels.
	Anonymize *TenantAnonymize `yaml:"anonymize"`
}

// AnonymizedLabels returns the labels anonymized for tenant t.
func (f *File) AnonymizedLabels(t *Tenant) []string {
	if t.Anonymize != nil {
		return t.Anonymize.Labels
	}
	return f.Anonymize.Labels
}

// Limits bounds what one tenant may send.
type Limits struct {
	IngestionRate       float64 `yaml:"ingestion_rate"`
	IngestionBurst      int     `yaml:"ingestion_burst"`
	MaxSeries           int     `yaml:"max_series"`
	MaxLabelsPerSeries  int     `yaml:"max_labels_per_series"`
	MaxLabelNameLength  int     `yaml:"max_label_name_length"`
	MaxLabelValueLength int     `yaml:"max_label_value_length"`
	MaxRequestBytes     int     `yaml:"max_request_bytes"`
	// MaxRequestBodyBytes bounds the body as sent (snappy-compressed).
	MaxRequestBodyBytes int `yaml:"max_request_body_bytes"`
}

// Storage configures the head and, later, the WAL.
type Storage struct {
	// Retention is how long a series without a newer sample stays held.
	Retention model.Duration `yaml:"retention"`
	// CheckpointInterval is how often the head is checkpointed and the WAL
	// segments it covers deleted.
	CheckpointInterval model.Duration `yaml:"checkpoint_interval"`
}

// Ring names the gateway instances and this instance's place among them:
// a static, ordered member list, or a DNS name whose A or SRV records are
// the members.
type Ring struct {
	Self       string   `yaml:"self"`
	Members    []Member `yaml:"members"`
	SecretFile string   `yaml:"secret_file"`
	// Secret is the content of SecretFile, read by Load.
	Secret []byte `yaml:"-"`
	// DNS is "host:port" (A/AAAA records) or "_service._proto.name" (SRV).
	DNS             string         `yaml:"dns"`
	RefreshInterval model.Duration `yaml:"refresh_interval"`
	// ForwardTimeout bounds one forward to a tenant's owner.
	ForwardTimeout model.Duration `yaml:"forward_timeout"`
	// RemoveAfter keeps a member that vanished from the DNS answer in the
	// ring that long (a pod being recreated), so buckets do not shift.
	RemoveAfter model.Duration `yaml:"remove_after"`
	// Scheme of the members' internal URLs found by DNS: http or https.
	Scheme string `yaml:"scheme"`
	// TLSConfig is the client side of forwards to https members: the CA of
	// their internal listeners and, where those require one (the
	// --web.config.file they share), a client certificate. Paths are
	// relative to the config file.
	TLSConfig promcfg.TLSConfig `yaml:"tls_config"`
}

// Clustered reports whether other instances may forward to this one or
// take forwards from it: a ring of several, found by DNS, or with a peer
// secret (a ring of one that instances being removed hand off to).
func (r *Ring) Clustered() bool { return r.DNS != "" || len(r.Members) > 1 || r.SecretFile != "" }

// Member is one gateway instance of the ring.
type Member struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
}

// MaxRequestBytesLimit bounds max_request_bytes: a decoded request is held
// in memory whole, and Prometheus' own limit for a remote-write body is far
// below this.
const MaxRequestBytesLimit = 256 << 20

// DefaultLimits are the limits of a file that sets none.
func DefaultLimits() Limits {
	return Limits{
		IngestionRate:       50000,
		IngestionBurst:      500000,
		MaxSeries:           500000,
		MaxLabelsPerSeries:  40,
		MaxLabelNameLength:  256,
		MaxLabelValueLength: 2048,
		MaxRequestBytes:     32 << 20,
		MaxRequestBodyBytes: 16 << 20,
	}
}

// Default returns a File with every default filled in and no tenants.
func Default() File {
	return File{
		ClusterLabel:     DefaultClusterLabel,
		Limits:           DefaultLimits(),
		RelabelCacheSize: 1 << 16,
		Storage:          Storage{Retention: model.Duration(10 * time.Minute), CheckpointInterval: model.Duration(time.Minute)},
		Ring:             Ring{RefreshInterval: model.Duration(30 * time.Second), ForwardTimeout: model.Duration(10 * time.Second)},
	}
}

// Load reads, parses and validates a configuration file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.loadSecret(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.Ring.TLSConfig.SetDirectory(filepath.Dir(path))
	if _, err := promcfg.NewTLSConfig(&f.Ring.TLSConfig); err != nil {
		return nil, fmt.Errorf("%s: ring: tls_config: %w", path, err)
	}
	if f.Ring.Clustered() {
		if f.Ring.SecretFile == "" {
			return nil, fmt.Errorf("%s: ring: secret_file is required when instances forward to each other", path)
		}
		if f.Ring.Secret, err = readSecret(filepath.Dir(path), f.Ring.SecretFile); err != nil {
			return nil, fmt.Errorf("%s: ring: %w", path, err)
		}
	}
	return f, nil
}

// loadSecret reads anonymize.secret_file (relative to dir) when any label
// is to be anonymized. A missing or empty secret is an error: hashing with
// no key would make the values guessable.
func (f *File) loadSecret(dir string) error {
	needed := len(f.Anonymize.Labels) > 0
	for i := range f.Tenants {
		needed = needed || len(f.AnonymizedLabels(&f.Tenants[i])) > 0
	}
	if !needed {
		return nil
	}
	if f.Anonymize.SecretFile == "" {
		return errors.New("anonymize: secret_file is required to anonymize labels")
	}
	b, err := readSecret(dir, f.Anonymize.SecretFile)
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	f.Anonymize.Secret = b
	return nil
}

// readSecret reads a secret file (relative to dir), without its trailing
// newline; an empty one is an error.
func readSecret(dir, path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret_file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("secret_file %s is empty", path)
	}
	return b, nil
}

// Parse parses and validates configuration YAML.
func Parse(b []byte) (*File, error) {
	f := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", oneLine(err))
	}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		t.Limits = f.Limits
		if t.LimitsOverride.Kind != 0 {
			if err := decodeStrict(&t.LimitsOverride, &t.Limits); err != nil {
				return nil, fmt.Errorf("tenant %q: limits: %w", t.ID, oneLine(err))
			}
		}
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// oneLine folds yaml's multi-line type errors into one line.
func oneLine(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return err
}

// decodeStrict decodes a YAML node refusing unknown keys. yaml.Node.Decode
// has no KnownFields switch, so the node is re-encoded and decoded strictly.
func decodeStrict(n *yaml.Node, out any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(out)
}

// Validate checks the whole file and returns the first problem found.
func (f *File) Validate() error {
	if !model.LabelName(f.ClusterLabel).IsValidLegacy() || f.ClusterLabel == model.MetricNameLabel {
		return fmt.Errorf("cluster_label: %q is not a valid label name", f.ClusterLabel)
	}
	if err := f.Limits.Validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	ids := make(map[string]bool, len(f.Tenants))
	for i := range f.Tenants {
		t := &f.Tenants[i]
		if err := t.Validate(); err != nil {
			return fmt.Errorf("tenants[%d]: %w", i, err)
		}
		if ids[t.ID] {
			return fmt.Errorf("tenants[%d]: duplicate id %q", i, t.ID)
		}
		ids[t.ID] = true
	}
	if f.Storage.Retention <= 0 {
		return errors.New("storage: retention must be positive")
	}
	if f.Storage.CheckpointInterval <= 0 {
		return errors.New("storage: checkpoint_interval must be positive")
	}
	if err := f.Ring.Validate(); err != nil {
		return fmt.Errorf("ring: %w", err)
	}
	for i, sel := range f.Allowlist {
		if _, err := ParseSelector(sel); err != nil {
			return fmt.Errorf("allowlist[%d]: %w", i, err)
		}
	}
	if err := validateRelabel(f.RelabelConfigs); err != nil {
		return fmt.Errorf("relabel_configs: %w", err)
	}
	if f.RelabelCacheSize < 0 {
		return errors.New("relabel_cache_size must not be negative")
	}
	if err := f.validateAnonymized(f.Anonymize.Labels); err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		if err := validateRelabel(t.RelabelConfigs); err != nil {
			return fmt.Errorf("tenant %q: relabel_configs: %w", t.ID, err)
		}
		if t.Anonymize != nil {
			if err := f.validateAnonymized(t.Anonymize.Labels); err != nil {
				return fmt.Errorf("tenant %q: anonymize: %w", t.ID, err)
			}
		}
	}
	return nil
}

// ParseSelector parses a series selector as the allowlist takes it: PromQL
// syntax and, as in PromQL, at least one matcher that does not match the
// empty string (an allowlist entry may not keep every series by accident).
// /federate takes match[] as Prometheus' does, without that rule.
func ParseSelector(sel string) ([]*labels.Matcher, error) {
	ms, err := parser.ParseMetricSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("bad selector %q: %w", sel, err)
	}
	for _, m := range ms {
		if !m.Matches("") {
			return ms, nil
		}
	}
	return nil, fmt.Errorf("bad selector %q: it must contain at least one non-empty matcher", sel)
}

// validateRelabel checks what Prometheus' own validation lets through but
// fedgate cannot store: label names outside [a-zA-Z_][a-zA-Z0-9_]* as
// targets of a rule.
func validateRelabel(cfgs []*relabel.Config) error {
	for i, c := range cfgs {
		if c == nil {
			return fmt.Errorf("[%d]: empty rule", i)
		}
		target := c.TargetLabel
		if c.Action == relabel.LabelMap {
			target = c.Replacement
		}
		if target != "" && !strings.Contains(target, "$") && !model.LabelName(target).IsValidLegacy() {
			return fmt.Errorf("[%d]: %q is not a valid label name", i, target)
		}
	}
	return nil
}

func (f *File) validateAnonymized(names []string) error {
	for _, n := range names {
		switch {
		case !model.LabelName(n).IsValidLegacy():
			return fmt.Errorf("%q is not a valid label name", n)
		case n == model.MetricNameLabel:
			return errors.New("the metric name cannot be anonymized")
		case n == f.ClusterLabel:
			return fmt.Errorf("%q is the cluster label, stamped after anonymization", n)
		}
	}
	return nil
}

// Validate checks a tenant's identity and credentials.
func (t *Tenant) Validate() error {
	if t.ID == "" {
		return errors.New("id is empty")
	}
	switch {
	case t.Token != "" && t.TokenSHA256 != "":
		return fmt.Errorf("tenant %q: set token or token_sha256, not both", t.ID)
	case t.Token == "" && t.TokenSHA256 == "":
		return fmt.Errorf("tenant %q: token or token_sha256 is required", t.ID)
	case t.TokenSHA256 != "":
		if b, err := hex.DecodeString(t.TokenSHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("tenant %q: token_sha256 must be 64 hex digits", t.ID)
		}
		if strings.EqualFold(t.TokenSHA256, emptySHA256) {
			return fmt.Errorf("tenant %q: token_sha256 is the digest of the empty token", t.ID)
		}
	}
	if err := t.Limits.Validate(); err != nil {
		return fmt.Errorf("tenant %q: limits: %w", t.ID, err)
	}
	// The id is stamped as the cluster label's value on every series.
	if len(t.ID) > t.Limits.MaxLabelValueLength {
		return fmt.Errorf("tenant %q: id of %d bytes, longer than its max_label_value_length of %d: every series would be refused", t.ID, len(t.ID), t.Limits.MaxLabelValueLength)
	}
	return nil
}

// emptySHA256 is the SHA-256 of the empty string, in hex.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Validate checks that every limit is usable.
func (l *Limits) Validate() error {
	switch {
	case !(l.IngestionRate > 0) || math.IsInf(l.IngestionRate, 1): // NaN too
		return errors.New("ingestion_rate must be a positive number")
	case l.IngestionBurst <= 0:
		return errors.New("ingestion_burst must be positive")
	case l.MaxSeries <= 0:
		return errors.New("max_series must be positive")
	case l.MaxLabelsPerSeries <= 0:
		return errors.New("max_labels_per_series must be positive")
	case l.MaxLabelNameLength <= 0:
		return errors.New("max_label_name_length must be positive")
	case l.MaxLabelValueLength <= 0:
		return errors.New("max_label_value_length must be positive")
	case l.MaxRequestBytes <= 0 || l.MaxRequestBytes > MaxRequestBytesLimit:
		return fmt.Errorf("max_request_bytes must be between 1 and %d", MaxRequestBytesLimit)
	case l.MaxRequestBodyBytes <= 0 || l.MaxRequestBodyBytes > MaxRequestBytesLimit:
		return fmt.Errorf("max_request_body_bytes must be between 1 and %d", MaxRequestBytesLimit)
	}
	return nil
}

// Validate checks the member list or the DNS name.
func (r *Ring) Validate() error {
	if r.DNS != "" && len(r.Members) > 0 {
		return errors.New("set members or dns, not both")
	}
	if r.RefreshInterval <= 0 || r.ForwardTimeout <= 0 || r.RemoveAfter < 0 {
		return errors.New("refresh_interval and forward_timeout must be positive, remove_after not negative")
	}
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		return fmt.Errorf("scheme %q is not http or https", r.Scheme)
	}
	if len(r.Members) == 0 {
		return nil
	}
	names := make(map[string]bool, len(r.Members))
	for i, m := range r.Members {
		if m.Name == "" {
			return fmt.Errorf("members[%d]: name is empty", i)
		}
		if names[m.Name] {
			return fmt.Errorf("members[%d]: duplicate name %q", i, m.Name)
		}
		names[m.Name] = true
		if u, err := url.Parse(m.URL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("members[%d]: url %q is not an absolute URL", i, m.URL)
		}
	}
	// self may come from the --ring.self flag; main checks it is set. A
	// self that is not among the members is an instance being removed: it
	// drains (owns nothing, forwards and hands off everything).
	return nil
}
