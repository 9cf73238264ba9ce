package io

import (
	"context"
	"errors"
	"log/slog"

	"github.com/apmkit/apmkit/tracestore"
)

// localSender writes batches into the explorer's trace store. It is an output like the
// others, so the store gets exactly what the pipeline decided to keep, and a store that
// cannot write (a full disk) is retried and spilled the same way as a network output.
type localSender struct {
	store *tracestore.Store
}

func newLocalSender(cfg OutputConfig, log *slog.Logger) (*localSender, error) {
	st, err := tracestore.Open(cfg.Dir, tracestore.Options{
		Retention: cfg.Retention,
		MaxBytes:  int64(cfg.MaxMB) << 20,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	return &localSender{store: st}, nil
}

func (s *localSender) send(_ context.Context, b *batch) (sendResult, error) {
	raw, err := b.rawBytes()
	if err != nil {
		return sendResult{}, &sendError{msg: err.Error()}
	}
	if err := s.store.Write(raw); err != nil {
		se := &sendError{msg: err.Error()}
		if errors.Is(err, tracestore.ErrMalformed) {
			// Split and written again, so only the lines that do not parse are lost.
			se.class = classMalformed
		}
		return sendResult{}, se
	}
	return sendResult{bytes: len(raw)}, nil
}

func (s *localSender) describe() string { return "local: " + s.store.Dir() }
func (s *localSender) location() string { return s.store.Dir() }
func (s *localSender) close() error     { return s.store.Close() }
