package io

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/apmkit/apmkit/point"
)

// spillQueue is an output's on-disk FIFO of batches it could not take: one gzip file per
// batch, named <seq>-<category>-<points>.lp.gz with a 20-digit sequence so names sort in
// delivery order and `zcat` shows the lines. A batch is written to a temp file, synced and
// renamed, so a crash leaves whole batches or nothing. The folder is rescanned on open, so
// the spill survives restarts. Beyond capacity the oldest batches are deleted and counted.
//
// Two processes must not share a spill folder (one apmkit per data dir).
type spillQueue struct {
	dir      string
	capacity int64
	codec    *gzipCodec
	onDrop   func(cat point.Category, points int, reason dropReason)

	mu       sync.Mutex
	entries  []spillEntry // ascending seq: entries[0] is the oldest
	bytes    int64
	inFlight uint64 // seq being delivered; eviction spares it (0: none)
	lastSeq  uint64 // highest seq ever used in this folder
}

type spillEntry struct {
	seq    uint64
	cat    point.Category
	points int
	size   int64
}

const (
	spillSuffix    = ".lp.gz"
	spillTmpPrefix = "tmp-"
	// firstSpillSeq leaves room below the first batch: a batch that fails after newer ones
	// were spilled is put in front of them (seq = head-1) to keep delivery in order.
	firstSpillSeq uint64 = 1 << 40
)

func (e spillEntry) fileName() string {
	return fmt.Sprintf("%020d-%s-%d%s", e.seq, e.cat, e.points, spillSuffix)
}

func parseSpillName(name string) (spillEntry, bool) {
	base, ok := strings.CutSuffix(name, spillSuffix)
	if !ok {
		return spillEntry{}, false
	}
	parts := strings.Split(base, "-")
	if len(parts) != 3 {
		return spillEntry{}, false
	}
	seq, err1 := strconv.ParseUint(parts[0], 10, 64)
	cat, err2 := point.ParseCategory(parts[1])
	points, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || seq == 0 || points < 0 {
		return spillEntry{}, false
	}
	return spillEntry{seq: seq, cat: cat, points: points}, true
}

// openSpillQueue creates the folder or picks up what a previous run left in it.
func openSpillQueue(dir string, capacity int64, codec *gzipCodec, onDrop func(point.Category, int, dropReason)) (*spillQueue, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	s := &spillQueue{dir: dir, capacity: capacity, codec: codec, onDrop: onDrop, lastSeq: firstSpillSeq - 1}
	if err := s.scan(); err != nil {
		return nil, err
	}
	s.evictLocked(0) // capacity_mb may have been lowered since the last run
	return s, nil
}

func (s *spillQueue) scan() error {
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	for _, f := range files {
		name := f.Name()
		if strings.HasPrefix(name, spillTmpPrefix) {
			_ = os.Remove(filepath.Join(s.dir, name)) // a write a crash interrupted
			continue
		}
		e, ok := parseSpillName(name)
		if !ok || !f.Type().IsRegular() {
			continue
		}
		info, err := f.Info()
		if err != nil {
			continue
		}
		e.size = info.Size()
		s.entries = append(s.entries, e)
		s.bytes += e.size
		s.lastSeq = max(s.lastSeq, e.seq)
	}
	slices.SortFunc(s.entries, func(a, b spillEntry) int { return compareUint(a.seq, b.seq) })
	return nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// push stores b at the tail (newest) or, with front, at the head: the worker uses front for
// a batch it took before everything now in the spill. Drops are counted through onDrop; the
// error is for the caller's log.
func (s *spillQueue) push(b *batch, front bool) error {
	gz, err := b.gzipBytes()
	if err != nil {
		s.onDrop(b.cat, b.points, dropSpillError)
		return fmt.Errorf("spill: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	size := int64(len(gz))
	if !s.evictLocked(size) {
		// Only when the batch alone exceeds the room eviction can make.
		s.onDrop(b.cat, b.points, dropSpillFull)
		return fmt.Errorf("spill: a %d-byte batch does not fit in capacity %d bytes", size, s.capacity)
	}
	e := spillEntry{cat: b.cat, points: b.points, size: size}
	if front && len(s.entries) > 0 {
		e.seq = s.entries[0].seq - 1
	} else {
		s.lastSeq++
		e.seq = s.lastSeq
	}
	if err := writeFileAtomic(s.dir, e.fileName(), gz); err != nil {
		s.onDrop(b.cat, b.points, dropSpillError)
		return fmt.Errorf("spill: %w", err)
	}
	if front {
		s.entries = slices.Insert(s.entries, 0, e)
	} else {
		s.entries = append(s.entries, e)
	}
	s.bytes += size
	return nil
}

// evictLocked deletes the oldest batches (sparing the one in flight) until need more bytes
// fit. It reports whether they fit.
func (s *spillQueue) evictLocked(need int64) bool {
	for s.bytes+need > s.capacity {
		i := 0
		if i < len(s.entries) && s.entries[i].seq == s.inFlight {
			i++
		}
		if i >= len(s.entries) {
			return false
		}
		e := s.entries[i]
		s.removeLocked(i)
		s.onDrop(e.cat, e.points, dropSpillFull)
	}
	return true
}

func (s *spillQueue) removeLocked(i int) {
	e := s.entries[i]
	_ = os.Remove(filepath.Join(s.dir, e.fileName()))
	s.entries = slices.Delete(s.entries, i, i+1)
	s.bytes -= e.size
}

// peek returns the oldest batch's entry and marks it in flight until complete or release.
func (s *spillQueue) peek() (spillEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) == 0 {
		return spillEntry{}, false
	}
	s.inFlight = s.entries[0].seq
	return s.entries[0], true
}

// load reads a batch back; gunzip checks its CRC, so a damaged file is an error.
func (s *spillQueue) load(e spillEntry) (*batch, error) {
	gz, err := os.ReadFile(filepath.Join(s.dir, e.fileName()))
	if err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	b := &batch{cat: e.cat, points: e.points, codec: s.codec, gz: gz}
	if _, err := b.rawBytes(); err != nil {
		return nil, fmt.Errorf("spill: %s: %w", e.fileName(), err)
	}
	return b, nil
}

// complete deletes a delivered (or permanently rejected) batch.
func (s *spillQueue) complete(e spillEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight = 0
	if i := s.indexLocked(e.seq); i >= 0 {
		s.removeLocked(i)
	}
}

// release keeps a batch that could not be delivered yet.
func (s *spillQueue) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight = 0
}

func (s *spillQueue) indexLocked(seq uint64) int {
	i, found := slices.BinarySearchFunc(s.entries, seq, func(e spillEntry, seq uint64) int { return compareUint(e.seq, seq) })
	if !found {
		return -1
	}
	return i
}

// size returns the batches and bytes held.
func (s *spillQueue) size() (batches int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries), s.bytes
}

func (s *spillQueue) empty() bool {
	n, _ := s.size()
	return n == 0
}

// writeFileAtomic writes a temp file, syncs it, renames it into place and syncs the folder,
// so after a crash the file is either whole or absent.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, spillTmpPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
