package io

import "sync"

// bufferPool recycles the line-protocol buffers of batches. At full speed the intake fills
// hundreds of MB/s of batches; allocating each one anew zeroes it (make) and makes the
// garbage collector run more often, for memory whose lifetime is known exactly (a batch
// frees its buffer when its last output lets go of it). The pool keeps at most maxBytes of
// idle buffers, so it adds a bounded amount to the memory queue_max_mb accounts.
type bufferPool struct {
	maxBytes int64

	mu    sync.Mutex
	free  [][]byte
	bytes int64
}

func (p *bufferPool) get(capacity int) []byte {
	p.mu.Lock()
	for n := len(p.free); n > 0; n = len(p.free) {
		buf := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.bytes -= int64(cap(buf))
		if cap(buf) >= capacity/2 { // a much smaller buffer would only be regrown
			p.mu.Unlock()
			return buf[:0]
		}
	}
	p.mu.Unlock()
	return make([]byte, 0, capacity)
}

func (p *bufferPool) put(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+int64(cap(buf)) > p.maxBytes {
		return
	}
	p.free = append(p.free, buf[:0])
	p.bytes += int64(cap(buf))
}
