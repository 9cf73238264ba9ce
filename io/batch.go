package io

import (
	"bytes"
	"fmt"
	stdio "io"
	"sync"
	"sync/atomic"

	"github.com/apmkit/apmkit/point"
	"github.com/klauspost/compress/gzip"
)

// batch is a block of line protocol of one category, the unit every output sends, retries,
// spills and counts. One batch is shared read-only by all outputs of its category. Its gzip
// form is made once, on first need, by whichever output goroutine wants it first (a sender
// or a spill writer), never on the intake path; the outputs that share the batch reuse it.
//
// A batch cut by the intake holds budget bytes and one reference per output; the last
// output to let go of it (delivered, dropped or spilled) returns the bytes to the budget.
// Batches read back from a spill have no budget: an output holds at most max_in_flight of
// them (with the spill files they come from, up to a few MiB each).
type batch struct {
	cat    point.Category
	points int
	codec  *gzipCodec
	budget *byteBudget
	pool   *bufferPool   // where raw goes back to when the batch is freed; nil: nowhere
	queued *atomic.Int64 // the category's points held in memory, nil for spilled batches
	refs   atomic.Int32

	mu      sync.Mutex
	raw     []byte // uncompressed line protocol; nil for a batch read back from a spill
	gz      []byte // gzip of raw; nil until needed
	gzLevel int
	held    int64 // bytes accounted in budget: raw, plus gz once made
	// rawLent is set when raw went to code that may still read it after the batch is freed
	// (an HTTP request body): raw is then not recycled.
	rawLent bool
}

// newBatch returns a batch that no budget accounts for (tests, spills).
func newBatch(cat point.Category, points int, raw []byte, codec *gzipCodec) *batch {
	return &batch{cat: cat, points: points, raw: raw, codec: codec}
}

// rawBytes returns the line protocol. The slice must not be modified, nor used after the
// caller let go of the batch (use lendRaw for that).
func (b *batch) rawBytes() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rawLocked()
}

// lendRaw is rawBytes for callers that may keep reading the slice after they let go of the
// batch (an HTTP transport can still be writing the body when the response arrives): the
// buffer is then never recycled.
func (b *batch) lendRaw() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rawLent = true
	return b.rawLocked()
}

func (b *batch) rawLocked() ([]byte, error) {
	if b.raw == nil && b.gz != nil {
		raw, err := b.codec.decompress(b.gz)
		if err != nil {
			return nil, err
		}
		b.raw = raw
	}
	return b.raw, nil
}

// gzipBytes returns the gzip'd line protocol at level, compressing on first need. A batch
// read back from a spill is returned as stored, whatever level it was written with. The
// slice must not be modified.
func (b *batch) gzipBytes(level int) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gz != nil && (b.gzLevel == level || b.raw == nil) {
		return b.gz, nil
	}
	gz, err := b.codec.compress(b.raw, level)
	if err != nil {
		return nil, err
	}
	if b.gz == nil { // another level (two outputs configured differently) is not kept
		b.gz, b.gzLevel = gz, level
		b.hold(int64(len(gz)))
	}
	return gz, nil
}

// hold accounts bytes of this batch in its budget; the caller holds b.mu.
func (b *batch) hold(n int64) {
	if b.budget != nil {
		b.budget.add(n)
		b.held += n
	}
}

// release drops one output's reference; the last one frees the batch's memory and budget.
func (b *batch) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	b.mu.Lock()
	held := b.held
	if b.pool != nil && !b.rawLent {
		b.pool.put(b.raw)
	}
	b.held, b.raw, b.gz = 0, nil, nil
	b.mu.Unlock()
	if b.queued != nil {
		b.queued.Add(-int64(b.points))
	}
	if b.budget != nil {
		b.budget.release(held)
	}
}

// size is the batch's in-memory line protocol, for the output queues' byte bounds.
func (b *batch) size() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.raw))
}

// gzipCodec pools gzip writers (one pool per level) and readers: a writer carries about a
// megabyte of state, too much to allocate per batch. It belongs to one Uploader (no
// package-level pools).
type gzipCodec struct {
	writers [gzip.BestCompression + 1]sync.Pool
	readers sync.Pool
}

func (c *gzipCodec) compress(raw []byte, level int) ([]byte, error) {
	level = max(gzip.BestSpeed, min(level, gzip.BestCompression))
	var buf bytes.Buffer
	// Line protocol of spans compresses to about a tenth at BestSpeed: one allocation
	// usually suffices.
	buf.Grow(len(raw)/8 + 64)
	zw, _ := c.writers[level].Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&buf, level); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
	} else {
		zw.Reset(&buf)
	}
	defer func() {
		zw.Reset(stdio.Discard) // drop the reference to buf before pooling the writer
		c.writers[level].Put(zw)
	}()
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// decompress also checks the gzip CRC. Only outputs that need the plain text of a spilled
// batch (file, gzip = false) and spill files of older apmkit versions (no CRC in the name)
// come here.
func (c *gzipCodec) decompress(gz []byte) ([]byte, error) {
	zr, _ := c.readers.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(gz))
	} else {
		err = zr.Reset(bytes.NewReader(gz))
	}
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	defer c.readers.Put(zr)
	raw, err := stdio.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	return raw, nil
}
