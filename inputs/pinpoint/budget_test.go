package pinpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// acquireAsync starts an acquire with a long wait and returns its result channel once the
// acquire is waiting in line.
func acquireAsync(t *testing.T, b *receiveBudget, ctx context.Context, class msgClass, cost int64, stop <-chan struct{}) <-chan error {
	t.Helper()
	before := b.stats().Waiting
	res := make(chan error, 1)
	go func() {
		_, err := b.acquire(ctx, class, cost, 1, guard, stop)
		res <- err
	}()
	waitUntil(t, "the acquire waits in line", func() bool { return b.stats().Waiting == before+1 })
	return res
}

func wantCode(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	var ae *admitError
	if reason != "" && (!errors.As(err, &ae) || ae.reason != reason) {
		t.Fatalf("got %v, want reason %s", err, reason)
	}
}

func outcome(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(guard):
		t.Fatalf("acquire still waiting after %s", guard)
		return nil
	}
}

func TestBudgetAdmitsUntilFullThenRefuses(t *testing.T) {
	b := newReceiveBudget(80)
	ctx := context.Background()
	// Span and stat messages may use 70 of 80: the rest is kept for agent info and metadata.
	for _, cost := range []int64{30, 40} {
		if n, err := b.acquire(ctx, classData, cost, 1, 0, nil); err != nil || n != cost {
			t.Fatalf("acquire %d: %d %v", cost, n, err)
		}
	}
	_, err := b.acquire(ctx, classData, 1, 1, 0, nil)
	wantCode(t, err, codes.ResourceExhausted, reasonBudgetExhausted)
	if n, err := b.acquire(ctx, classControl, 10, 1, 0, nil); err != nil || n != 10 {
		t.Fatalf("control message within the reserve: %d %v", n, err)
	}
	_, err = b.acquire(ctx, classControl, 1, 1, 0, nil)
	wantCode(t, err, codes.ResourceExhausted, reasonBudgetExhausted)
	for _, n := range []int64{30, 40, 10} {
		b.release(n)
	}
	if st := b.stats(); st.InUse != 0 || st.PeakBytes != 80 {
		t.Fatalf("after release: %+v", st)
	}
}

func TestBudgetRefusesWhatCanNeverFit(t *testing.T) {
	b := newReceiveBudget(80)
	_, err := b.acquire(context.Background(), classData, 71, 1, time.Hour, nil)
	wantCode(t, err, codes.ResourceExhausted, reasonOverBudget)
	if !strings.Contains(err.Error(), "receive_budget_mb") {
		t.Fatalf("the answer does not name the option: %v", err)
	}
	if n, err := b.acquire(context.Background(), classControl, 80, 1, 0, nil); err != nil || n != 80 {
		t.Fatalf("a control message may use the whole budget: %d %v", n, err)
	}
}

// TestBudgetWaitersGoInOrder: a waiting message gets room when it frees, in arrival order,
// and a smaller message that would fit does not pass one waiting before it.
func TestBudgetWaitersGoInOrder(t *testing.T) {
	b := newReceiveBudget(80)
	ctx := context.Background()
	if _, err := b.acquire(ctx, classData, 60, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	first := acquireAsync(t, b, ctx, classData, 50, nil)
	second := acquireAsync(t, b, ctx, classData, 20, nil)
	_, err := b.acquire(ctx, classData, 5, 1, 0, nil) // would fit, but others wait before it
	wantCode(t, err, codes.ResourceExhausted, reasonBudgetExhausted)
	b.release(60)
	if err := outcome(t, first); err != nil {
		t.Fatal(err)
	}
	if err := outcome(t, second); err != nil {
		t.Fatal(err)
	}
	if st := b.stats(); st.InUse != 70 || st.Waiting != 0 || st.WaitingBytes != 0 {
		t.Fatalf("after both were admitted: %+v", st)
	}
}

// TestBudgetControlGoesFirst: a control message waits only for the whole budget and is
// admitted before data messages waiting before it.
func TestBudgetControlGoesFirst(t *testing.T) {
	b := newReceiveBudget(80)
	ctx := context.Background()
	if _, err := b.acquire(ctx, classControl, 75, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	data := acquireAsync(t, b, ctx, classData, 40, nil)
	control := acquireAsync(t, b, ctx, classControl, 40, nil)
	b.release(75)
	if err := outcome(t, control); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-data:
		t.Fatalf("the data message was admitted beside the control message: %v", err)
	default:
	}
	b.release(40)
	if err := outcome(t, data); err != nil {
		t.Fatal(err)
	}
}

func TestBudgetWaitEnds(t *testing.T) {
	b := newReceiveBudget(80)
	ctx := context.Background()
	if _, err := b.acquire(ctx, classData, 70, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	// The wait bound: RESOURCE_EXHAUSTED, which says it waited.
	_, err := b.acquire(ctx, classData, 10, 1, 20*time.Millisecond, nil)
	wantCode(t, err, codes.ResourceExhausted, reasonBudgetExhausted)
	if !strings.Contains(err.Error(), "waited") {
		t.Fatalf("%v", err)
	}
	// The call's end.
	cctx, cancel := context.WithCancel(ctx)
	res := acquireAsync(t, b, cctx, classData, 10, nil)
	cancel()
	wantCode(t, outcome(t, res), codes.Canceled, reasonBudgetExhausted)
	// The drain.
	stop := make(chan struct{})
	res = acquireAsync(t, b, ctx, classData, 10, stop)
	close(stop)
	if err := outcome(t, res); !errors.Is(err, errStopping) {
		t.Fatalf("got %v, want UNAVAILABLE (stopping)", err)
	}
	if st := b.stats(); st.InUse != 70 || st.Waiting != 0 || st.WaitingBytes != 0 {
		t.Fatalf("after the waits ended: %+v", st)
	}
	// A waiter that gives up lets the one behind it in.
	actx, giveUp := context.WithCancel(ctx)
	big := acquireAsync(t, b, actx, classData, 60, nil)
	small := acquireAsync(t, b, ctx, classData, 10, nil)
	b.release(20) // room for the small one, but the big one is first in line
	select {
	case err := <-small:
		t.Fatalf("a message passed the one waiting before it: %v", err)
	default:
	}
	giveUp()
	wantCode(t, outcome(t, big), codes.Canceled, "")
	if err := outcome(t, small); err != nil {
		t.Fatal(err)
	}
	if st := b.stats(); st.InUse != 60 || st.Waiting != 0 {
		t.Fatalf("at the end: %+v", st)
	}
}

// TestBudgetWaitingRoom: what waits holds its received bytes; beyond the waiting room (a
// quarter of the budget) a message is refused at once.
func TestBudgetWaitingRoom(t *testing.T) {
	b := newReceiveBudget(800) // waiting room 200
	ctx := context.Background()
	if _, err := b.acquire(ctx, classData, 700, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := b.acquire(ctx, classData, 100, 150, guard, nil)
		res <- err
	}()
	waitUntil(t, "a message waits", func() bool { return b.stats().WaitingBytes == 150 })
	_, err := b.acquire(ctx, classData, 100, 51, guard, nil)
	wantCode(t, err, codes.ResourceExhausted, reasonBudgetExhausted)
	b.release(700)
	if err := outcome(t, res); err != nil {
		t.Fatal(err)
	}
}
