package io

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/apmkit/apmkit/point"
)

// spillQueue is an output's on-disk FIFO of batches it could not take yet, in segment files
// (spill_file.go) of one or more batches. Everything the queue needs (order, counts, a
// checksum) is in the file names, so counting, evicting and completing batches never reads
// a file, and loading one checks its CRC instead of decompressing it. The folder is
// rescanned on open, so the spill survives restarts. Beyond capacity the oldest segments are
// deleted and counted.
//
// Several senders deliver from the queue at once: peek hands out the oldest batch nobody is
// delivering, so batches go out oldest first but may complete in any order, also inside a
// segment. A segment's file goes when its last batch is delivered; a graceful stop (close)
// rewrites a segment delivered out of order without its delivered batches, so the next run
// sends none of them again.
//
// Two processes must not share a spill folder (one apmkit per data dir).
type spillQueue struct {
	dir      string
	capacity int64
	codec    *gzipCodec
	// onDrop counts (and logs) lost points; err says why. It runs under the queue's lock.
	onDrop func(cat point.Category, points int, reason dropReason, err error)
	// base is the spill sequence of this run's output sequence 0: after every file a
	// previous run left, so they are delivered first.
	base uint64

	mu      sync.Mutex
	segs    []*spillSegment // ascending seq: segs[0] is the oldest
	batches int             // batches not yet delivered (those being delivered included)
	bytes   int64           // files on disk plus writes in progress
}

// spillSegment is one spill file. name.delivered counts its leading batches delivered so far
// (the file is renamed to say so only when the queue closes); with several senders, later
// batches may be delivered before it, which state records.
type spillSegment struct {
	name spillName
	file string // the name on disk
	size int64

	// Delivery, under the queue's lock. state is made on the first peek; before, the first
	// name.delivered batches are delivered and the others pending.
	state  []batchState
	busy   int // batches being delivered: eviction spares the segment
	done   int // batches delivered, the first name.delivered included
	resume map[int]*delivery

	// Loading: once per segment, by the first sender that needs it; its result (data or
	// error) holds for every batch of the segment.
	loadMu  sync.Mutex
	loaded  bool
	loadErr error
	data    []byte // under the queue's lock as well
	recs    []spillRecord
}

// batchState is where a spilled batch is in its delivery.
type batchState uint8

const (
	batchPending batchState = iota
	batchBusy               // a sender is delivering it
	batchDone               // delivered (or refused for good)
)

func (g *spillSegment) remaining() int { return g.name.batches - g.done }

func (g *spillSegment) isDone(i int) bool {
	if g.state == nil {
		return i < g.name.delivered
	}
	return g.state[i] == batchDone
}

func (g *spillSegment) initState() {
	if g.state != nil {
		return
	}
	g.state = make([]batchState, g.name.batches)
	for i := range g.name.delivered {
		g.state[i] = batchDone
	}
}

// remainingPoints counts the points not yet delivered (all of them until it is loaded,
// when nothing of it can have been delivered yet).
func (g *spillSegment) remainingPoints() int {
	if g.recs == nil {
		return g.name.points
	}
	n := 0
	for i, r := range g.recs {
		if !g.isDone(i) {
			n += r.points
		}
	}
	return n
}

// spillEntry is a batch being delivered.
type spillEntry struct {
	seg   *spillSegment
	cat   point.Category
	index int // the batch's place in its segment: entries are equal when they are the same batch
}

// spillItem is a batch to write: its output sequence and its gzip form.
type spillItem struct {
	seq    uint64
	cat    point.Category
	points int
	gz     []byte
}

// segmentMaxBytes bounds a spill file: a group of batches is cut into files of at most
// this size, or a quarter of the capacity, so eviction stays fine-grained.
const segmentMaxBytes = 4 << 20

// openSpillQueue creates the folder or picks up what a previous run left in it.
func openSpillQueue(dir string, capacity int64, codec *gzipCodec, onDrop func(point.Category, int, dropReason, error)) (*spillQueue, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	s := &spillQueue{dir: dir, capacity: capacity, codec: codec, onDrop: onDrop}
	last, err := s.scan()
	if err != nil {
		return nil, err
	}
	s.base = max(last+1, firstSpillSeq)
	s.evictLocked(0) // capacity_mb may have been lowered since the last run
	return s, nil
}

// scan loads the folder's segments and returns the highest sequence found.
func (s *spillQueue) scan() (uint64, error) {
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("spill: %w", err)
	}
	var last uint64
	for _, f := range files {
		name := f.Name()
		if strings.HasPrefix(name, spillTmpPrefix) {
			_ = os.Remove(filepath.Join(s.dir, name)) // a write a crash interrupted
			continue
		}
		n, ok := parseSpillName(name)
		if !ok || !f.Type().IsRegular() {
			continue
		}
		info, err := f.Info()
		if err != nil {
			continue
		}
		g := &spillSegment{name: n, file: name, size: info.Size(), done: n.delivered}
		if n.delivered > 0 {
			// Its remaining points are in the file; an error shows on delivery.
			g.loadErr, g.loaded = s.loadSegment(g), true
		}
		s.segs = append(s.segs, g)
		s.batches += g.remaining()
		s.bytes += g.size
		last = max(last, n.seq+uint64(n.batches)-1)
	}
	slices.SortFunc(s.segs, func(a, b *spillSegment) int { return compareUint(a.name.seq, b.name.seq) })
	return last, nil
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

// pushGroup stores batches under their output sequence numbers, which places them in FIFO
// order among those already spilled (a batch a sender gave up on goes ahead of newer ones
// the spill writer stored meanwhile). Consecutive batches of one category share a file; files
// are written and fsynced concurrently and share one folder sync. It returns how many
// batches were stored; every loss is counted and explained through onDrop, and the error
// joins the write errors (not the evictions: a full spill is no error of the disk).
func (s *spillQueue) pushGroup(items []spillItem) (int, error) {
	keep := s.reserve(items)
	segs, files, errs := s.buildSegments(items, keep)
	writeFilesAtomic(s.dir, files)
	s.mu.Lock()
	defer s.mu.Unlock()
	written := 0
	for i, g := range segs {
		if files[i].err != nil {
			err := fmt.Errorf("spill: %w", files[i].err)
			s.bytes -= g.size
			s.onDrop(g.name.cat, g.name.points, dropSpillError, err)
			errs = append(errs, err)
			continue
		}
		s.insertLocked(g)
		written += g.name.batches
	}
	return written, errors.Join(errs...)
}

// memberSize is the bytes a batch takes in a segment file.
func memberSize(it spillItem) int64 {
	return int64(len(it.gz) - gzipHeaderLen + memberHeaderLen)
}

// reserve makes room for the items and accounts their bytes while they are written. Room
// comes from the oldest segments on disk, then from the oldest items of this group (a group
// larger than the capacity keeps its newest batches); an item that cannot fit even alone is
// dropped. Dropped items are counted; keep says which remain.
func (s *spillQueue) reserve(items []spillItem) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make([]bool, len(items))
	for i, it := range items {
		size := memberSize(it)
		fits := s.evictLocked(size)
		for !fits && s.skipOldestLocked(items[:i], keep) {
			fits = s.evictLocked(size)
		}
		if !fits {
			s.onDrop(it.cat, it.points, dropSpillFull,
				fmt.Errorf("spill: a %d-byte batch does not fit in capacity_mb (%d bytes) beside the batches being delivered", size, s.capacity))
			continue
		}
		keep[i] = true
		s.bytes += size
	}
	return keep
}

// errSpillFull explains an eviction.
func (s *spillQueue) errSpillFull() error {
	return fmt.Errorf("spill: capacity_mb reached (%d bytes): the oldest batches make room for new ones", s.capacity)
}

// skipOldestLocked gives up the oldest kept item of the group; false if none.
func (s *spillQueue) skipOldestLocked(items []spillItem, keep []bool) bool {
	for j, it := range items {
		if keep[j] {
			keep[j] = false
			s.bytes -= memberSize(it)
			s.onDrop(it.cat, it.points, dropSpillFull, s.errSpillFull())
			return true
		}
	}
	return false
}

// buildSegments cuts the kept items into files: runs of one category, within the size
// bound, in sequence order.
func (s *spillQueue) buildSegments(items []spillItem, keep []bool) ([]*spillSegment, []pendingFile, []error) {
	b := segmentBuilder{base: s.base, limit: min(segmentMaxBytes, max(s.capacity/4, 1))}
	var errs []error
	for i, it := range items {
		if !keep[i] {
			continue
		}
		if err := b.add(items[i:], keep[i:]); err != nil {
			s.unreserve(it, err)
			errs = append(errs, err)
		}
	}
	b.flush()
	return b.segs, b.files, errs
}

// segmentBuilder assembles segment files from consecutive items.
type segmentBuilder struct {
	base  uint64
	limit int64
	segs  []*spillSegment
	files []pendingFile
	cur   *spillSegment
	data  []byte
}

// add appends items[0] to the current segment, or to a new one when the category changes
// or the size bound is reached; the rest of items sizes the new segment's buffer.
func (b *segmentBuilder) add(items []spillItem, keep []bool) error {
	it := items[0]
	if b.cur != nil && (b.cur.name.cat != it.cat || b.cur.size+memberSize(it) > b.limit) {
		b.flush()
	}
	if b.cur == nil {
		b.cur = &spillSegment{name: spillName{seq: b.base + it.seq, cat: it.cat}}
		b.data = make([]byte, 0, segmentBytes(items, keep, b.limit))
	}
	data, err := appendMember(b.data, it.cat, it.points, it.gz)
	if err != nil {
		return err
	}
	b.data = data
	b.cur.name.points += it.points
	b.cur.name.batches++
	b.cur.size += memberSize(it)
	return nil
}

func (b *segmentBuilder) flush() {
	if b.cur != nil && b.cur.name.batches > 0 {
		b.cur.name.crc = crc32.ChecksumIEEE(b.data)
		b.cur.file = b.cur.name.String()
		b.segs = append(b.segs, b.cur)
		b.files = append(b.files, pendingFile{name: b.cur.file, data: b.data})
	}
	b.cur, b.data = nil, nil
}

// segmentBytes is the size of the segment that starts with items[0]: the file buffer is
// allocated once.
func segmentBytes(items []spillItem, keep []bool, limit int64) int64 {
	var n int64
	for i, it := range items {
		if !keep[i] {
			continue
		}
		if it.cat != items[0].cat || (n > 0 && n+memberSize(it) > limit) {
			break
		}
		n += memberSize(it)
	}
	return n
}

func (s *spillQueue) unreserve(it spillItem, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes -= memberSize(it)
	s.onDrop(it.cat, it.points, dropSpillError, err)
}

func (s *spillQueue) insertLocked(g *spillSegment) {
	s.batches += g.remaining()
	n := len(s.segs)
	if n == 0 || s.segs[n-1].name.seq < g.name.seq {
		s.segs = append(s.segs, g) // the usual case: the spill writer appends
		return
	}
	i, _ := slices.BinarySearchFunc(s.segs, g.name.seq, func(x *spillSegment, seq uint64) int { return compareUint(x.name.seq, seq) })
	s.segs = slices.Insert(s.segs, i, g)
}

// evictLocked deletes the oldest segments (sparing those being delivered) until need more
// bytes fit. It reports whether they fit.
func (s *spillQueue) evictLocked(need int64) bool {
	for s.bytes+need > s.capacity {
		i := slices.IndexFunc(s.segs, func(g *spillSegment) bool { return g.busy == 0 })
		if i < 0 {
			return false
		}
		g := s.segs[i]
		s.onDrop(g.name.cat, g.remainingPoints(), dropSpillFull, s.errSpillFull())
		s.removeLocked(i)
	}
	return true
}

func (s *spillQueue) removeLocked(i int) {
	g := s.segs[i]
	_ = os.Remove(filepath.Join(s.dir, g.file))
	s.segs = slices.Delete(s.segs, i, i+1)
	s.bytes -= g.size
	s.batches -= g.remaining()
	g.data, g.recs, g.resume = nil, nil, nil
}

// peek returns the oldest batch nobody is delivering and marks it busy until complete,
// dropCorrupt or release; false when every batch left is being delivered.
func (s *spillQueue) peek() (spillEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if g.remaining() == g.busy {
			continue // every batch left is being delivered
		}
		g.initState()
		for i := g.name.delivered; i < g.name.batches; i++ {
			if g.state[i] == batchPending {
				g.state[i] = batchBusy
				g.busy++
				return spillEntry{seg: g, cat: g.name.cat, index: i}, true
			}
		}
	}
	return spillEntry{}, false
}

// load returns the entry's batch, reading its segment on first need. The CRC in the name
// detects a damaged file without decompressing it; files of older versions have none and
// are checked by gunzip.
func (s *spillQueue) load(e spillEntry) (*batch, error) {
	g := e.seg
	if g.name.legacy {
		return s.loadLegacy(g)
	}
	g.loadMu.Lock()
	if !g.loaded {
		g.loadErr, g.loaded = s.loadSegment(g), true
	}
	err := g.loadErr
	g.loadMu.Unlock()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.index >= len(g.recs) { // cannot happen: a busy segment is neither evicted nor removed
		return nil, fmt.Errorf("spill: %s: batch %d is gone", g.file, e.index)
	}
	r := g.recs[e.index]
	return &batch{cat: g.name.cat, points: r.points, codec: s.codec, gz: plainMember(g.data[r.off:r.end])}, nil
}

// loadSegment reads and indexes a segment: once (see load), and eviction spares a segment
// being delivered.
func (s *spillQueue) loadSegment(g *spillSegment) error {
	data, err := os.ReadFile(filepath.Join(s.dir, g.file))
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	if err := checkFile(g.name, data); err != nil {
		return fmt.Errorf("spill: %s: %w", g.file, err)
	}
	recs, err := parseMembers(data, g.name.cat)
	if err == nil && len(recs) != g.name.batches {
		err = fmt.Errorf("%d batches, the name says %d", len(recs), g.name.batches)
	}
	if err != nil {
		return fmt.Errorf("spill: %s: %w", g.file, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g.data, g.recs = data, recs
	return nil
}

func (s *spillQueue) loadLegacy(g *spillSegment) (*batch, error) {
	gz, err := os.ReadFile(filepath.Join(s.dir, g.file))
	if err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	b := &batch{cat: g.name.cat, points: g.name.points, codec: s.codec, gz: gz}
	if _, err := b.rawBytes(); err != nil {
		return nil, fmt.Errorf("spill: %s: %w", g.file, err)
	}
	return b, nil
}

// complete marks the entry's batch delivered (or permanently rejected); a segment's file is
// deleted with its last batch.
func (s *spillQueue) complete(e spillEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := e.seg
	if !s.unbusyLocked(e) {
		return
	}
	i := slices.Index(s.segs, g)
	if i < 0 {
		return
	}
	g.state[e.index] = batchDone
	g.done++
	s.batches--
	delete(g.resume, e.index)
	for g.name.delivered < g.name.batches && g.state[g.name.delivered] == batchDone {
		g.name.delivered++
	}
	if g.remaining() == 0 {
		s.removeLocked(i)
	}
}

// unbusyLocked ends the entry's delivery; false if it was not being delivered.
func (s *spillQueue) unbusyLocked(e spillEntry) bool {
	g := e.seg
	if g.state == nil || g.state[e.index] != batchBusy {
		return false
	}
	g.state[e.index] = batchPending
	g.busy--
	return true
}

// dropCorrupt deletes the entry's segment, which cannot be read (err), and counts the points
// lost with it. Every batch of the segment fails to load alike (see load), so no other
// sender can be delivering one of them.
func (s *spillQueue) dropCorrupt(e spillEntry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unbusyLocked(e)
	i := slices.Index(s.segs, e.seg)
	if i < 0 {
		return
	}
	s.onDrop(e.cat, e.seg.remainingPoints(), dropSpillCorrupt, err)
	s.removeLocked(i)
}

// release keeps a batch that could not be delivered yet; d, when not nil, is what is left of
// it after a split (see outputWorker.spillDelivery).
func (s *spillQueue) release(e spillEntry, d *delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.unbusyLocked(e) || !slices.Contains(s.segs, e.seg) {
		return
	}
	if d != nil {
		if e.seg.resume == nil {
			e.seg.resume = map[int]*delivery{}
		}
		e.seg.resume[e.index] = d
	}
}

// resumed returns what a split left of the entry's batch, if anything.
func (s *spillQueue) resumed(e spillEntry) *delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.seg.resume[e.index]
}

// close records a segment a stop cut (some batches delivered) in its file name, so the next
// run starts after them; a segment delivered out of order is rewritten without its delivered
// batches (or, if that fails, keeps them: they will be sent again).
func (s *spillQueue) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, g := range s.segs {
		if g.done > g.name.delivered {
			err := s.compactLocked(g)
			if err == nil {
				continue
			}
			errs = append(errs, err)
		}
		if name := g.name.String(); name != g.file {
			if err := os.Rename(filepath.Join(s.dir, g.file), filepath.Join(s.dir, name)); err != nil {
				errs = append(errs, fmt.Errorf("spill: %w", err))
				continue
			}
			g.file = name
		}
	}
	return errors.Join(errs...)
}

// compactLocked replaces a segment's file by one of its batches not yet delivered. The new
// file is in place before the old one goes: a crash between the two sends batches twice,
// never loses one.
func (s *spillQueue) compactLocked(g *spillSegment) error {
	if g.recs == nil {
		return fmt.Errorf("spill: %s: not loaded", g.file)
	}
	var data []byte
	n := spillName{cat: g.name.cat}
	for i, r := range g.recs {
		if g.isDone(i) {
			continue
		}
		if n.batches == 0 {
			// At or below the batch's own sequence, above every older segment's.
			n.seq = g.name.seq + uint64(i)
		}
		data = append(data, g.data[r.off:r.end]...)
		n.points += r.points
		n.batches++
	}
	n.crc = crc32.ChecksumIEEE(data)
	files := []pendingFile{{name: n.String(), data: data}}
	writeFilesAtomic(s.dir, files)
	if err := files[0].err; err != nil {
		return fmt.Errorf("spill: %s: %w", g.file, err)
	}
	_ = os.Remove(filepath.Join(s.dir, g.file))
	s.bytes += int64(len(data)) - g.size
	g.name, g.file, g.size = n, files[0].name, int64(len(data))
	g.state, g.done, g.data, g.recs, g.resume = nil, 0, nil, nil, nil
	g.loaded, g.loadErr = false, nil
	return nil
}

// size returns the batches and bytes held.
func (s *spillQueue) size() (batches int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches, s.bytes
}

func (s *spillQueue) empty() bool {
	n, _ := s.size()
	return n == 0
}
