package pinpoint

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
)

// The receive budget bounds the memory of the messages being decoded and handled. Each
// message is charged, before it is decoded, what decoding and handling it will hold (see
// estimate.go and admissionCost), and the charge is released once the message's content is
// handed on. When the budget is spent, a message waits for room: a unary call (a span
// batch) at most receive_budget_wait, then it is answered RESOURCE_EXHAUSTED and the agent
// sends it again later; a stream stops reading meanwhile, so gRPC flow control holds the
// agent back, at most streamWaitFactor times as long, then the stream ends with
// RESOURCE_EXHAUSTED and the agent opens a new one. A message that alone costs more than
// the budget allows is never decoded.
//
// Two classes of messages share the budget. Agent info, metadata, pings and commands are
// small and spans wait for them (a span whose metadata is late gets placeholders), so they
// never queue behind spans: span and stat messages may only use the budget up to a
// reserve that is kept for the others, and when the others do wait they go first.
//
// What waits for room is held in memory as received (gRPC reads a message whole before
// the codec runs): those raw bytes are bounded by a waiting room of a quarter of the
// budget; beyond it a message is refused at once instead of waiting.

// msgClass is which part of the budget a message may use.
type msgClass int

const (
	classControl msgClass = iota // agent info, metadata, pings, commands
	classData                    // span and stat messages
	numClasses
)

// Shares of the budget: the reserve only control messages may use, and the waiting room.
const (
	controlReserveDiv = 8
	waitingRoomDiv    = 4
	// streamWaitFactor: a stream message waits this many times receive_budget_wait.
	streamWaitFactor = 10
	// processingFactor: handling a span makes points of about 4 times its decoded size
	// (measured: 18 KB allocated per 12-event span that decodes to 4.3 KB), one span at a
	// time per call, so a message is also charged 4 times its largest sub-message.
	processingFactor = 4
)

// admissionCost is what a message of wire bytes with heap estimate e is charged: the
// decoded messages, the received bytes and their contiguous copy during decoding, and the
// points of its largest sub-message while that is handled.
func admissionCost(e heapEstimate, wire int) int64 {
	return e.total + 2*int64(wire) + processingFactor*e.largest
}

// Reasons an admission fails (counted as rejected with these reasons).
const (
	reasonBudgetExhausted = "budget_exhausted" // no room within the wait, or the waiting room is full
	reasonOverBudget      = "over_budget"      // the message alone costs more than the budget
)

// admitError is an admission refused: a gRPC status (RESOURCE_EXHAUSTED, or the call's own
// end) with the reason it is counted under.
type admitError struct {
	reason string
	st     *status.Status
}

func (e *admitError) Error() string              { return e.st.Err().Error() }
func (e *admitError) GRPCStatus() *status.Status { return e.st }

// receiveBudget is a byte semaphore with two FIFO queues.
type receiveBudget struct {
	capacity    int64
	limits      [numClasses]int64 // what each class may hold in all
	waitingRoom int64

	mu         sync.Mutex
	inUse      int64
	waitingRaw int64
	queues     [numClasses]list.List // of *budgetWaiter
	waits      prometheus.Counter
	peak       int64
}

type budgetWaiter struct {
	class   msgClass
	cost    int64
	raw     int64
	ready   chan struct{}
	granted bool
}

func newReceiveBudget(capacity int64) *receiveBudget {
	b := &receiveBudget{capacity: capacity, waitingRoom: capacity / waitingRoomDiv}
	b.limits[classControl] = capacity
	b.limits[classData] = capacity - capacity/controlReserveDiv
	b.waits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apmkit_pinpoint_receive_budget_waits_total",
		Help: "Messages that waited for room in the receive budget.",
	})
	return b
}

// collectors are the budget's metrics.
func (b *receiveBudget) collectors() []prometheus.Collector {
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	return []prometheus.Collector{
		b.waits,
		gauge("apmkit_pinpoint_receive_budget_bytes", "Memory charged to the messages being decoded and handled now.", func() float64 {
			return float64(b.stats().InUse)
		}),
		gauge("apmkit_pinpoint_receive_budget_capacity_bytes", "The receive budget (receive_budget_mb).", func() float64 {
			return float64(b.capacity)
		}),
		gauge("apmkit_pinpoint_receive_budget_waiting_messages", "Messages waiting for room in the receive budget.", func() float64 {
			return float64(b.stats().Waiting)
		}),
	}
}

// BudgetStats is the receive budget in /v1/stats.
type BudgetStats struct {
	CapacityBytes int64 `json:"capacity_bytes"`
	InUse         int64 `json:"in_use_bytes"`
	PeakBytes     int64 `json:"peak_bytes"`
	Waiting       int   `json:"waiting_messages"`
	WaitingBytes  int64 `json:"waiting_bytes"`
}

func (b *receiveBudget) stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{
		CapacityBytes: b.capacity, InUse: b.inUse, PeakBytes: b.peak,
		Waiting: b.queues[classControl].Len() + b.queues[classData].Len(), WaitingBytes: b.waitingRaw,
	}
}

// acquire charges cost bytes for a message of raw received bytes. It returns at once when
// the class has room and none of its messages (nor, for data, any control message) waits
// before it; else the message waits in line until room frees, at most wait, or until ctx
// ends or stop closes (nil: never). It returns the bytes charged, which the caller
// releases once the message's content is handed on.
func (b *receiveBudget) acquire(ctx context.Context, class msgClass, cost, raw int64, wait time.Duration, stop <-chan struct{}) (int64, error) {
	limit := b.limits[class]
	if cost > limit {
		return 0, &admitError{reason: reasonOverBudget, st: status.Newf(codes.ResourceExhausted,
			"pinpoint: this message needs %s of memory to decode and handle; the receive budget allows %s (receive_budget_mb)",
			mibString(cost), mibString(limit))}
	}
	b.mu.Lock()
	if b.admissibleLocked(class, cost) {
		b.chargeLocked(cost)
		b.mu.Unlock()
		return cost, nil
	}
	if wait <= 0 || b.waitingRaw+raw > b.waitingRoom {
		inUse, waiting := b.inUse, b.queues[classControl].Len()+b.queues[classData].Len()
		b.mu.Unlock()
		return 0, b.exhausted(inUse, waiting, 0)
	}
	w := &budgetWaiter{class: class, cost: cost, raw: raw, ready: make(chan struct{})}
	el := b.queues[class].PushBack(w)
	b.waitingRaw += raw
	b.mu.Unlock()
	b.waits.Inc()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return cost, nil
	case <-timer.C:
	case <-ctx.Done():
		err = &admitError{reason: reasonBudgetExhausted, st: status.FromContextError(ctx.Err())}
	case <-stop:
		err = errStopping
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted { // room came at the same moment: take it
		return cost, nil
	}
	b.queues[class].Remove(el)
	b.waitingRaw -= raw
	b.grantLocked() // the messages behind it may fit
	if err == nil {
		err = b.exhausted(b.inUse, b.queues[classControl].Len()+b.queues[classData].Len(), wait)
	}
	return 0, err
}

func (b *receiveBudget) exhausted(inUse int64, waiting int, waited time.Duration) error {
	msg := fmt.Sprintf("pinpoint: apmkit's receive budget is in use (%s of %s, %d messages waiting); send again later",
		mibString(inUse), mibString(b.capacity), waiting)
	if waited > 0 {
		msg += fmt.Sprintf(" (waited %s)", waited)
	}
	return &admitError{reason: reasonBudgetExhausted, st: status.New(codes.ResourceExhausted, msg)}
}

// admissibleLocked: the class has room for cost and nobody who goes first is waiting.
func (b *receiveBudget) admissibleLocked(class msgClass, cost int64) bool {
	if b.queues[classControl].Len() > 0 || (class == classData && b.queues[classData].Len() > 0) {
		return false
	}
	return b.inUse+cost <= b.limits[class]
}

func (b *receiveBudget) chargeLocked(cost int64) {
	b.inUse += cost
	b.peak = max(b.peak, b.inUse)
}

// grantLocked admits waiting messages in order, control messages first, while they fit.
func (b *receiveBudget) grantLocked() {
	for class := range numClasses {
		q := &b.queues[class]
		for q.Len() > 0 {
			w := q.Front().Value.(*budgetWaiter)
			if b.inUse+w.cost > b.limits[class] {
				return // in line: nothing behind it, nor any data message, goes first
			}
			q.Remove(q.Front())
			b.waitingRaw -= w.raw
			b.chargeLocked(w.cost)
			w.granted = true
			close(w.ready)
		}
	}
}

// release returns what acquire charged.
func (b *receiveBudget) release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse = max(b.inUse-n, 0)
	b.grantLocked()
}

func mibString(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// admitter is the admit function of the frames of a call: nil without a budget (an input
// that was not started). A unary call waits at most receive_budget_wait and at most half of
// the time its deadline leaves, so the agent hears RESOURCE_EXHAUSTED (and sends the batch
// again) instead of giving up with its fate unknown; a stream message waits
// streamWaitFactor times longer. stop ends the wait with UNAVAILABLE (the drain).
func (in *Input) admitter(ctx context.Context, class msgClass, stream bool, stop <-chan struct{}) func(cost, raw int64) (int64, error) {
	b := in.budget
	if b == nil {
		return nil
	}
	wait := in.cfg.ReceiveBudgetWait
	if stream {
		wait *= streamWaitFactor
	}
	return func(cost, raw int64) (int64, error) {
		w := wait
		if deadline, ok := ctx.Deadline(); ok && !stream {
			w = min(w, time.Until(deadline)/2)
		}
		return b.acquire(ctx, class, cost, raw, w, stop)
	}
}

// rejectAdmission counts a message the budget refused.
func (in *Input) rejectAdmission(sender *meta.Sender, err error) {
	reason := reasonStopping
	var ae *admitError
	if errors.As(err, &ae) {
		reason = ae.reason
	}
	in.counters.reject(sender, reason)
}

// streamAdmission handles a stream message the budget refused: one that alone costs more
// than the budget is counted and skipped (it was never decoded, and the stream goes on);
// otherwise (no room in time, the call ended) the stream ends with the refusal, which
// tells the agent to open a new one.
func (in *Input) streamAdmission(ctx context.Context, err error) error {
	in.rejectAdmission(senderFrom(ctx), err)
	var ae *admitError
	if errors.As(err, &ae) && ae.reason == reasonOverBudget {
		return nil
	}
	return err
}
