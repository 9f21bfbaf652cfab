// Package federate serves GET /federate: the newest sample of every held
// series that matches a match[] selector, in the Prometheus text exposition
// format 0.0.4, for a central Prometheus scraping with honor_labels: true.
//
// It mirrors Prometheus' own /federate: several match[] selectors are a
// union, no selector is an empty 200, a bad one is a 400, one whose
// matchers all match the empty string selects every series ("{}", with
// none, selects none); each series carries an explicit millisecond
// timestamp; families are grouped by metric name,
// sorted, each under a "# TYPE name untyped" line; a series without an
// instance label gets instance="" so that honor_labels keeps its identity
// instead of the scrape's own instance label. Stale series (newest sample a
// staleness marker) and series past the retention are left out.
//
// Output streams: it is written family by family from a snapshot of that
// family's series pointers, so memory is bounded by the largest family, not
// by the response. Matchers on __name__ are evaluated once per family, the
// others once per series. No lock is held while writing. The response is
// gzip'd at BestSpeed (github.com/klauspost/compress) when the client
// accepts it; deflate is most of the CPU a scrape costs, rendering the text
// (text.go) the rest.
package federate
