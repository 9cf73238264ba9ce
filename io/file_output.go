package io

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/point"
)

// fileSender writes line protocol to rotating files, one stream per category:
// DIR/tracing-0000000001.lp, DIR/tracing-0000000002.lp... The highest number is the file
// being written (`tail -f` it; names sort by sequence, so `cat DIR/tracing-*.lp` reads in
// order). Files are plain line protocol, each batch written whole with one write call.
// Only the output's worker calls send, so streams need no lock.
type fileSender struct {
	dir      string
	maxBytes int64
	maxFiles int
	streams  map[point.Category]*fileStream
}

// fileStream is one category's sequence of files.
type fileStream struct {
	dir      string
	prefix   string   // category name
	seqs     []uint64 // existing files, ascending; the last is the current one
	f        *os.File
	size     int64
	maxFiles int
}

const fileSeqDigits = 10

func newFileSender(cfg OutputConfig) (*fileSender, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("file output: %w", err)
	}
	return &fileSender{
		dir:      cfg.Dir,
		maxBytes: int64(cfg.MaxFileMB) << 20,
		maxFiles: cfg.MaxFiles,
		streams:  map[point.Category]*fileStream{},
	}, nil
}

func (s *fileSender) send(_ context.Context, b *batch) (sendResult, error) {
	raw, err := b.rawBytes()
	if err != nil {
		return sendResult{}, &sendError{msg: err.Error()}
	}
	st, err := s.stream(b.cat)
	if err != nil {
		return sendResult{}, &sendError{msg: err.Error()}
	}
	if err := st.write(raw, s.maxBytes); err != nil {
		return sendResult{}, &sendError{msg: err.Error()}
	}
	return sendResult{bytes: len(raw)}, nil
}

func (s *fileSender) stream(cat point.Category) (*fileStream, error) {
	if st := s.streams[cat]; st != nil {
		return st, nil
	}
	st := &fileStream{dir: s.dir, prefix: cat.String(), maxFiles: s.maxFiles}
	if err := st.scan(); err != nil {
		return nil, err
	}
	s.streams[cat] = st
	return st, nil
}

func (st *fileStream) name(seq uint64) string {
	return filepath.Join(st.dir, fmt.Sprintf("%s-%0*d.lp", st.prefix, fileSeqDigits, seq))
}

// scan finds the files a previous run wrote, so numbering and the file cap continue.
func (st *fileStream) scan() error {
	entries, err := os.ReadDir(st.dir)
	if err != nil {
		return fmt.Errorf("file output: %w", err)
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), st.prefix+"-")
		digits, ok2 := strings.CutSuffix(rest, ".lp")
		if !ok || !ok2 || len(digits) != fileSeqDigits || !e.Type().IsRegular() {
			continue
		}
		if seq, err := strconv.ParseUint(digits, 10, 64); err == nil {
			st.seqs = append(st.seqs, seq)
		}
	}
	slices.Sort(st.seqs)
	return nil
}

// write appends a whole batch, starting a new file first when the batch would take the
// current one past maxBytes (a batch bigger than maxBytes gets a file of its own).
func (st *fileStream) write(raw []byte, maxBytes int64) error {
	if st.f == nil {
		if err := st.openLast(maxBytes); err != nil {
			return err
		}
	}
	if st.size > 0 && st.size+int64(len(raw)) > maxBytes {
		if err := st.rotate(); err != nil {
			return err
		}
	}
	n, err := st.f.Write(raw)
	if err != nil {
		// Cut a partial write so a retry does not leave half a batch before the whole one.
		_ = st.f.Truncate(st.size)
		return fmt.Errorf("file output: write %s: %w", st.f.Name(), err)
	}
	st.size += int64(n)
	return nil
}

// openLast continues the newest file of a previous run if it has room, else starts one.
func (st *fileStream) openLast(maxBytes int64) error {
	if len(st.seqs) == 0 {
		return st.rotate()
	}
	name := st.name(st.seqs[len(st.seqs)-1])
	info, err := os.Stat(name)
	if err != nil || info.Size() >= maxBytes {
		return st.rotate()
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("file output: %w", err)
	}
	st.f, st.size = f, info.Size()
	return nil
}

// rotate closes the current file, opens the next number and deletes the oldest files
// beyond maxFiles (the new one included).
func (st *fileStream) rotate() error {
	if st.f != nil {
		if err := st.f.Close(); err != nil {
			return fmt.Errorf("file output: %w", err)
		}
		st.f = nil
	}
	next := uint64(1)
	if len(st.seqs) > 0 {
		next = st.seqs[len(st.seqs)-1] + 1
	}
	f, err := os.OpenFile(st.name(next), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("file output: %w", err)
	}
	st.f, st.size = f, 0
	st.seqs = append(st.seqs, next)
	for len(st.seqs) > st.maxFiles {
		if err := os.Remove(st.name(st.seqs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file output: %w", err)
		}
		st.seqs = st.seqs[1:]
	}
	return nil
}

func (s *fileSender) describe() string { return "file: " + s.dir }

func (s *fileSender) location() string { return s.dir }

func (s *fileSender) close() error {
	var errs []error
	for _, st := range s.streams {
		if st.f != nil {
			errs = append(errs, st.f.Close())
			st.f = nil
		}
	}
	return errors.Join(errs...)
}
