package io

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apmkit/apmkit/point"
)

// dropLog logs lost points, for the uploader (reasons before any output) or one output: per
// reason, one line at the first loss, then at most one per interval, each with the points
// lost since the previous line, so the lines of a reason add up to its
// apmkit_io_points_dropped_total. Losses after a line are summed and logged when the
// interval is over (a timer), or at Stop (flush), whichever comes first.
type dropLog struct {
	log   *slog.Logger
	url   string        // the output's location (secrets masked), on the lines of its answers
	every time.Duration // tests: the interval of every reason instead of dropLogEvery's

	mu      sync.Mutex
	closed  bool // flushed at Stop: later losses are logged without a timer
	tallies [numDropReasons]dropTally
}

// dropTally is one reason's losses since its last line.
type dropTally struct {
	last   time.Time   // the last line; zero before the first
	points int64       // lost since then
	cats   uint32      // their categories, a bit per categoryIndex
	err    error       // the latest cause
	timer  *time.Timer // set while losses wait for the end of the interval
}

// dropRecord is one line to log.
type dropRecord struct {
	reason dropReason
	points int64
	cats   uint32
	err    error
	over   time.Duration // since the previous line; 0 for the first
}

func newDropLog(log *slog.Logger, url string) *dropLog {
	return &dropLog{log: log, url: url}
}

// dropLogEvery is how often a reason may be logged. A category no output takes is the
// configuration's choice, not a fault: reminded once an hour.
func dropLogEvery(r dropReason) time.Duration {
	if r == dropNoOutput {
		return time.Hour
	}
	return time.Minute
}

// note records a loss; the line goes now or at the end of the reason's interval.
func (l *dropLog) note(cat point.Category, points int, r dropReason, err error) {
	if points <= 0 {
		return
	}
	l.mu.Lock()
	t := &l.tallies[r]
	t.points += int64(points)
	if i := categoryIndex(cat); i >= 0 {
		t.cats |= 1 << i
	}
	if err != nil {
		t.err = err
	}
	now := time.Now()
	every := dropLogEvery(r)
	if l.every > 0 {
		every = l.every
	}
	if wait := t.last.Add(every).Sub(now); !t.last.IsZero() && wait > 0 {
		if t.timer == nil && !l.closed {
			t.timer = time.AfterFunc(wait, func() { l.due(r) })
		}
		l.mu.Unlock()
		return
	}
	rec := l.takeLocked(r, now)
	l.mu.Unlock()
	l.emit(rec)
}

// due is a reason's timer: its losses since the last line are logged.
func (l *dropLog) due(r dropReason) {
	l.mu.Lock()
	t := &l.tallies[r]
	t.timer = nil
	if l.closed || t.points == 0 {
		l.mu.Unlock()
		return // flush logged them
	}
	rec := l.takeLocked(r, time.Now())
	l.mu.Unlock()
	l.emit(rec)
}

func (l *dropLog) takeLocked(r dropReason, now time.Time) dropRecord {
	t := &l.tallies[r]
	rec := dropRecord{reason: r, points: t.points, cats: t.cats, err: t.err}
	if !t.last.IsZero() {
		rec.over = now.Sub(t.last)
	}
	t.last, t.points, t.cats, t.err = now, 0, 0, nil
	return rec
}

// flush logs what waits for a timer and stops the timers: the uploader is stopping.
func (l *dropLog) flush() {
	l.mu.Lock()
	l.closed = true
	var recs []dropRecord
	now := time.Now()
	for r := range l.tallies {
		t := &l.tallies[r]
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		if t.points > 0 {
			recs = append(recs, l.takeLocked(dropReason(r), now))
		}
	}
	l.mu.Unlock()
	for _, rec := range recs {
		l.emit(rec)
	}
}

func (l *dropLog) emit(rec dropRecord) {
	level, msg := dropMessage(rec.reason)
	var cats []string
	for i, c := range point.Categories {
		if rec.cats&(1<<i) != 0 {
			cats = append(cats, c.String())
		}
	}
	attrs := []slog.Attr{
		slog.String("reason", rec.reason.String()),
		slog.Int64("points", rec.points),
		slog.String("category", strings.Join(cats, ",")),
	}
	if rec.over > 0 {
		// The points were lost over this period; the line before counted the earlier ones.
		over := rec.over.Round(time.Second)
		if over == 0 {
			over = rec.over.Round(time.Millisecond)
		}
		attrs = append(attrs, slog.Duration("over", over))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("err", rec.err.Error()))
	}
	if l.url != "" && rec.reason.answered() {
		attrs = append(attrs, slog.String("url", l.url))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// answered: the output's server refused the points.
func (r dropReason) answered() bool {
	return r == dropPermanent || r == dropMalformed || r == dropTooLarge
}

// dropMessage is a reason's log level and message.
func dropMessage(r dropReason) (slog.Level, string) {
	switch r {
	case dropQueueFull:
		return slog.LevelWarn, "io: memory queue full (queue_max_mb) for feed_timeout, points dropped"
	case dropNotRunning:
		return slog.LevelWarn, "io: points fed while the uploader is not running, dropped"
	case dropInvalid:
		return slog.LevelWarn, "io: invalid points rejected (by reason in apmkit_io_points_rejected_total)"
	case dropNoOutput:
		return slog.LevelInfo, "io: no output takes these points (io.outputs categories), dropped"
	case dropPermanent:
		return slog.LevelError, "io: output rejected batches (an HTTP 4xx that retrying cannot change), dropped"
	case dropMalformed:
		return slog.LevelError, "io: output refused lines as malformed, dropped (the other lines of their batches are sent without them)"
	case dropTooLarge:
		return slog.LevelError, "io: output refused lines as too large, dropped (the other lines of their batches are sent without them)"
	case dropSpillFull:
		return slog.LevelError, "io: disk spill full (capacity_mb): its oldest batches dropped"
	case dropSpillError:
		return slog.LevelError, "io: could not write the disk spill, batches dropped"
	case dropSpillCorrupt:
		return slog.LevelError, "io: spilled batches unreadable, dropped"
	}
	return slog.LevelError, "io: points dropped"
}
