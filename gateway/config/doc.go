// Package config owns fedgate's configuration file: its YAML form, its
// defaults and its validation.
//
// A File is plain data. Load reads and validates it; nothing here opens
// listeners, reads flags or keeps package-level state. Per-tenant limit
// overrides are merged over the global limits at load time, so consumers see
// one complete Limits per tenant.
//
// Unknown keys are refused, so that a misspelt key never silently does
// nothing.
package config
