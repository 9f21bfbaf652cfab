// Package relabel shapes series on their way in: it stamps the cluster label
// so that no cluster can write as another.
//
// The order of the pipeline is fixed: everything a tenant's configuration
// may change happens first, stamping happens last, so no rule and no client
// value can remove or forge the cluster label.
//
// Functions here work in place on caller-owned label slices and never keep
// them; they allocate nothing.
package relabel
