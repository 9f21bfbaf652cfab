// Package fuzz holds go test -fuzz targets that cross package lines: the
// remote-write decoder against the reference prompb decoder, and the like.
// It has no non-test code beyond this comment.
//
// Run one target with, for example:
//
//	go test -run='^$' -fuzz=FuzzDecodeWriteRequest -fuzztime=60s ./fuzz/
//
// A crashing input is written under testdata/fuzz/<Target>/; commit it, and
// plain go test replays it as a regression test from then on.
package fuzz
