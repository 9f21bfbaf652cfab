// Package relabel shapes series on their way in: the allowlist, Prometheus
// relabel_configs, anonymization of chosen label values, and stamping the
// cluster label.
//
// The order is fixed: allowlist, global relabel_configs, the tenant's
// relabel_configs, anonymization, then stamping last, so that no rule and
// no client value can remove or forge the cluster label. A Pipeline is
// compiled once per configuration (selectors parsed, regexes compiled at
// load) and is immutable and safe for concurrent use; per-request scratch
// lives in a State the caller owns.
//
// Functions here work on caller-owned label slices and never keep them;
// they allocate only what a rule creates (a replaced value) and, on a cache
// miss, an anonymized value and its key.
package relabel
