// Package gateway holds fedgate's HTTP handlers: the remote-write endpoint,
// health and readiness; federation lives in gateway/federate.
//
// # The write path
//
// One request goes: authenticate (401) -> media type (415) -> the tenant's
// token bucket can cover a request like its last one (429, before the body
// is read) -> body size (413) -> a processing slot (brief queue, then 503)
// -> body read through a limit -> snappy.DecodedLen against
// max_request_bytes (413) -> a decoding turn (one request per CPU decodes
// at a time, shared with the peer endpoint: WriteOptions.Decoding) -> decode into a pooled remotewrite.Request -> per
// series (Settings.resolve): the client's cluster label out, the tenant's
// pipeline (allowlist, relabel_configs, anonymization; results memoized per
// series), the cluster label stamped, sort, validate, pack -> the whole
// request charged to the bucket (429) -> Storage.Append (ring.Router: the
// local WAL, or the tenant's owner) -> answer. Storage.Append returns only
// when the samples are on disk on their owner; the answer is sent after
// that, never before.
//
// Everything per request lives in one pooled writeState; nothing is
// allocated per series. Strings in the decoded request point into the pooled
// buffer, so only packed label bytes are handed to storage, and storage
// copies what it keeps. The decoded part (raw bytes, series, labels, packed
// labels) is a separate pooled input, given back with the decoding turn as
// soon as the storage has read the labels (head.Batch.ReleaseLabels: the
// WAL after resolving series, forwarding after encoding), so a request
// waiting for its fsync holds only its body and samples.
//
// # Partial acceptance
//
// Invalid series do not spoil valid ones: the valid series of a request are
// stored, and the answer is 400 naming how many series were rejected and the
// first reason. Prometheus does not retry a 400, and need not: what was valid
// is kept.
//
// # Errors
//
// Errors decide the status code through statusOf, by errors.Is, in one
// place.
package gateway
