package io

import (
	"bytes"
	"net/http"
)

// delivery is one batch on its way to an output: whole, or, once the server refused it as
// malformed, the pieces of it still to deliver. Splitting lets the good lines of a batch
// through and drops only the lines the server refuses on their own. Re-sending lines the
// server already wrote (InfluxDB's "partial write" keeps the good ones) is harmless: a row
// is its series and timestamp, so the same line overwrites itself.
type delivery struct {
	b      *batch
	split  bool
	pieces []*batch // once split: what is left, in order
}

// attempt sends what is left of d once. Lines the output refuses are dropped and counted on
// the way; an error (retryable or configuration) means the rest is kept for later.
func (w *outputWorker) attempt(d *delivery) error {
	if !d.split {
		parts, err := w.sendPart(d.b)
		if err != nil || parts == nil {
			return err
		}
		d.split, d.pieces = true, parts
	}
	for len(d.pieces) > 0 {
		parts, err := w.sendPart(d.pieces[0])
		if err != nil {
			return err
		}
		d.pieces = append(parts, d.pieces[1:]...)
	}
	return nil
}

// sendPart sends a batch or piece once. It returns the halves to send instead when the
// server refused it as malformed or too large, nil when it is delivered or dropped, and the
// error when it must be kept.
func (w *outputWorker) sendPart(b *batch) ([]*batch, error) {
	err := w.sendOnce(b)
	if err == nil {
		return nil, nil
	}
	switch classOf(err) {
	case classMalformed:
		if first, second, ok := halves(b); ok {
			return []*batch{first, second}, nil
		}
		w.dropRefused(b, err)
		return nil, nil
	case classPermanent:
		w.dropRefused(b, err)
		return nil, nil
	}
	return nil, err
}

// remaining is what d has left to deliver, as one batch for the spill: the batch itself, or
// a copy of its pieces (the batch is then let go of).
func (d *delivery) remaining() *batch {
	if !d.split {
		return d.b
	}
	var raw []byte
	points := 0
	for _, p := range d.pieces {
		pr, _ := p.rawBytes() // pieces always hold their raw line protocol
		raw = append(raw, pr...)
		points += p.points
	}
	rest := newBatch(d.b.cat, points, raw, d.b.codec)
	rest.refs.Store(1)
	d.b.release()
	return rest
}

// halves cuts a batch in two at the line nearest its middle; false for a single line (or
// a batch whose line protocol cannot be read back).
func halves(b *batch) (*batch, *batch, bool) {
	// The pieces share the batch's buffer, and an HTTP transport may read a piece's body
	// after its answer: the buffer must never be recycled.
	raw, err := b.lendRaw()
	if err != nil {
		return nil, nil, false
	}
	n := lineCount(raw)
	if n < 2 {
		return nil, nil, false
	}
	cut := lineOffset(raw, n/2)
	return newBatch(b.cat, n/2, raw[:cut], b.codec), newBatch(b.cat, n-n/2, raw[cut:], b.codec), true
}

// lineCount counts lines; every point is one line (newlines inside values are escaped).
func lineCount(raw []byte) int {
	n := bytes.Count(raw, []byte{'\n'})
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		n++
	}
	return n
}

// lineOffset is where line i (0-based) starts.
func lineOffset(raw []byte, i int) int {
	off := 0
	for ; i > 0; i-- {
		off += bytes.IndexByte(raw[off:], '\n') + 1
	}
	return off
}

// dropRefused counts and logs a batch or line the server refused for good.
func (w *outputWorker) dropRefused(b *batch, err error) {
	reason := dropPermanent
	switch {
	case statusOf(err) == http.StatusRequestEntityTooLarge:
		reason = dropTooLarge
	case classOf(err) == classMalformed:
		reason = dropMalformed
	}
	w.counters.permanentErrors.Add(1)
	w.drop(b.cat, b.points, reason, err)
}

// noteFailure records a failed attempt for Stats and logs it at once when the output
// starts failing, then at most once a minute per kind: the operator learns the cause at the
// first failure, not when retry_max_elapsed spills the first batch. Refused batches and
// lines are logged where they are dropped.
func (w *outputWorker) noteFailure(err error) {
	w.counters.lastErr.set(err)
	if w.ctx.Err() != nil {
		return // the stop deadline cut the request short: not the output's doing
	}
	switch classOf(err) {
	case classConfig:
		w.counters.health.Store(int32(healthConfigError))
		if ok, n := w.configLog.allow(); ok {
			w.failureLogged.Store(true)
			w.log.Error("io: output refuses apmkit (configuration error); batches are kept in the disk spill and retried until it is fixed",
				"url", w.sender.location(), "err", err, "fix", configHint(err, w.cfg), "suppressed", n)
		}
	case classRetry:
		w.counters.health.Store(int32(healthFailing))
		if ok, n := w.failLog.allow(); ok {
			w.failureLogged.Store(true)
			w.log.Warn("io: output delivery failed; retrying, then keeping batches in the disk spill",
				"url", w.sender.location(), "err", err, "suppressed", n)
		}
	}
}

// noteDelivered marks the output healthy, and says so when its failure was logged.
func (w *outputWorker) noteDelivered() {
	was := outputHealth(w.counters.health.Swap(int32(healthOK)))
	if was != healthOK && w.failureLogged.CompareAndSwap(true, false) {
		w.log.Info("io: output delivers again", "url", w.sender.location(), "was", was.String())
	}
}

// prepare sets the output up before its first batch (InfluxDB 1.x: CREATE DATABASE). A
// failure is logged and delivery goes on: if the database is really missing, the writes'
// answers keep the batches and say so.
func (w *outputWorker) prepare() {
	p, ok := w.sender.(preparer)
	if !ok {
		return
	}
	err := p.prepare(w.ctx)
	if err == nil || w.ctx.Err() != nil {
		return
	}
	if c := classOf(err); c == classConfig || c == classRetry {
		w.noteFailure(err) // shares the rate limits of the writes' failures
		return
	}
	w.counters.lastErr.set(err)
	w.log.Error("io: could not set the output up; writes go on", "url", w.sender.location(), "err", err)
}
