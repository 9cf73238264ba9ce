package io

import (
	"bytes"
	"fmt"
	stdio "io"
	"sync"

	"github.com/apmkit/apmkit/point"
	"github.com/klauspost/compress/gzip"
)

// batch is a block of line protocol of one category, the unit every output sends, retries,
// spills and counts. One batch is shared read-only by all outputs of its category; the gzip
// form is computed once, on first need, because several outputs (and the spill) want it.
type batch struct {
	cat    point.Category
	points int
	codec  *gzipCodec

	mu  sync.Mutex
	raw []byte // uncompressed line protocol; nil until needed for a batch read from the spill
	gz  []byte // gzip of raw; nil until needed
}

func newBatch(cat point.Category, points int, raw []byte, codec *gzipCodec) *batch {
	return &batch{cat: cat, points: points, raw: raw, codec: codec}
}

// rawBytes returns the line protocol. The slice must not be modified.
func (b *batch) rawBytes() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.raw == nil && b.gz != nil {
		raw, err := b.codec.decompress(b.gz)
		if err != nil {
			return nil, err
		}
		b.raw = raw
	}
	return b.raw, nil
}

// gzipBytes returns the gzip'd line protocol. The slice must not be modified.
func (b *batch) gzipBytes() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gz == nil {
		gz, err := b.codec.compress(b.raw)
		if err != nil {
			return nil, err
		}
		b.gz = gz
	}
	return b.gz, nil
}

// gzipCodec pools gzip writers and readers: a writer carries about a megabyte of state, too
// much to allocate per batch. It belongs to one Uploader (no package-level pools).
type gzipCodec struct {
	writers sync.Pool
	readers sync.Pool
}

func (c *gzipCodec) compress(raw []byte) ([]byte, error) {
	zw, _ := c.writers.Get().(*gzip.Writer)
	var buf bytes.Buffer
	buf.Grow(len(raw)/4 + 64)
	if zw == nil {
		zw = gzip.NewWriter(&buf)
	} else {
		zw.Reset(&buf)
	}
	defer func() {
		zw.Reset(stdio.Discard) // drop the reference to buf before pooling the writer
		c.writers.Put(zw)
	}()
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// decompress also checks the gzip CRC, which is how a damaged spill file is detected.
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
