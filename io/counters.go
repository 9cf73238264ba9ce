package io

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apmkit/apmkit/point"
)

// dropReason says why points were lost. Every loss is counted under exactly one reason.
type dropReason int

const (
	dropQueueFull    dropReason = iota // Feed waited feed_timeout for room in queue_max_mb
	dropNotRunning                     // Feed before Start or after Stop
	dropInvalid                        // the point failed point.Validate (details in rejected)
	dropNoOutput                       // no output takes this category
	dropPermanent                      // the output answered with a permanent error (4xx)
	dropMalformed                      // a line the output refused as malformed (400, partial write)
	dropTooLarge                       // a single line larger than the output accepts (413)
	dropSpillFull                      // evicted from a spill at capacity_mb, oldest first
	dropSpillError                     // the spill could not be written (disk full, permissions)
	dropSpillCorrupt                   // a spilled batch could not be read back
	dropUnmapped                       // rows an output could not map to its format (otlp; reasons in the log)
	dropRejected                       // points the server rejected in a request it accepted (OTLP partial success)
	numDropReasons
)

func (r dropReason) String() string {
	switch r {
	case dropQueueFull:
		return "queue_full"
	case dropNotRunning:
		return "not_running"
	case dropInvalid:
		return "invalid"
	case dropNoOutput:
		return "no_output"
	case dropPermanent:
		return "permanent"
	case dropMalformed:
		return "malformed"
	case dropTooLarge:
		return "too_large"
	case dropSpillFull:
		return "spill_full"
	case dropSpillError:
		return "spill_error"
	case dropSpillCorrupt:
		return "spill_corrupt"
	case dropUnmapped:
		return "unmapped"
	case dropRejected:
		return "rejected"
	}
	return "unknown"
}

// outputLevel reports whether the reason belongs to an output (the others happen before a
// batch reaches any output).
func (r dropReason) outputLevel() bool { return r >= dropPermanent }

// rejectReason details dropInvalid, after point's validation errors.
type rejectReason int

const (
	rejectNoName rejectReason = iota
	rejectNoFields
	rejectBadKey
	rejectBadTagValue
	rejectBadFloat
	rejectBadString
	rejectTagsUnsorted
	rejectDupField
	rejectNilPoint
	rejectOther
	numRejectReasons
)

func (r rejectReason) String() string {
	switch r {
	case rejectNoName:
		return "no_name"
	case rejectNoFields:
		return "no_fields"
	case rejectBadKey:
		return "bad_key"
	case rejectBadTagValue:
		return "bad_tag_value"
	case rejectBadFloat:
		return "bad_float"
	case rejectBadString:
		return "bad_string"
	case rejectTagsUnsorted:
		return "tags_unsorted"
	case rejectDupField:
		return "dup_field"
	case rejectNilPoint:
		return "nil_point"
	}
	return "other"
}

func rejectReasonOf(err error) rejectReason {
	reasons := [...]struct {
		err    error
		reason rejectReason
	}{
		{point.ErrNoName, rejectNoName},
		{point.ErrNoFields, rejectNoFields},
		{point.ErrBadKey, rejectBadKey},
		{point.ErrBadTagValue, rejectBadTagValue},
		{point.ErrBadFloat, rejectBadFloat},
		{point.ErrBadString, rejectBadString},
		{point.ErrTagsUnsorted, rejectTagsUnsorted},
		{point.ErrDupField, rejectDupField},
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return rejectOther
}

// categoryCounters are one category's counts before the outputs.
type categoryCounters struct {
	in       atomic.Int64 // accepted by Feed
	batched  atomic.Int64 // encoded into batches
	queued   atomic.Int64 // points held in memory (open batch, batches waiting for an output)
	batches  atomic.Int64
	rejected [numRejectReasons]atomic.Int64
	dropped  [numDropReasons]atomic.Int64 // only the reasons that are not outputLevel
}

// outputCounters are one output's counts. Stats and /metrics both read them, so the two
// never disagree.
type outputCounters struct {
	perCategory     []outputCategoryCounters // indexed like point.Categories
	bytesSent       atomic.Int64
	batchesSent     atomic.Int64
	retries         atomic.Int64
	permanentErrors atomic.Int64
	spilledBatches  atomic.Int64
	lastErr         lastError
	health          atomic.Int32 // an outputHealth
}

// outputHealth is what the output's last delivery attempt said about it, for Stats and
// /metrics: a failing output keeps its batches (memory, then spill) until it is back.
type outputHealth int32

const (
	healthOK          outputHealth = iota // the last attempt was delivered (or none yet)
	healthFailing                         // network error, timeout, 408, 429, 5xx: retried
	healthConfigError                     // 401, 403, database or bucket not found: fix the config
	numHealths
)

func (h outputHealth) String() string {
	switch h {
	case healthFailing:
		return "failing"
	case healthConfigError:
		return "config_error"
	}
	return "ok"
}

type outputCategoryCounters struct {
	sent    atomic.Int64
	dropped [numDropReasons]atomic.Int64 // only outputLevel reasons
}

func newOutputCounters() *outputCounters {
	return &outputCounters{perCategory: make([]outputCategoryCounters, len(point.Categories))}
}

func (c *outputCounters) drop(cat point.Category, points int, reason dropReason) {
	if i := categoryIndex(cat); i >= 0 {
		c.perCategory[i].dropped[reason].Add(int64(points))
	}
}

// lastError keeps the most recent error text for Stats; errors are not logged per batch.
type lastError struct {
	mu   sync.Mutex
	text string
	at   time.Time
}

func (l *lastError) set(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text = err.Error()
	l.at = time.Now()
}

func (l *lastError) get() (string, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text, l.at
}

// categoryIndex maps a category to its position in point.Categories, or -1.
func categoryIndex(cat point.Category) int {
	for i, c := range point.Categories {
		if c == cat {
			return i
		}
	}
	return -1
}

// logLimiter lets a recurring problem be logged at most once per interval, and says how
// many occurrences were not logged in between.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last = now
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
