package load

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apmkit/apmkit/cmd/ppload/internal/gen"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// Message names as the collector counts them (apmkit's in.Stats().Messages), so tests and
// the bench harness compare the two maps key by key.
const (
	msgAgentInfo    = "PAgentInfo"
	msgPing         = "PPing"
	msgAPIMeta      = "PApiMetaData"
	msgSQLMeta      = "PSqlMetaData"
	msgStringMeta   = "PStringMetaData"
	msgBatch        = "PSpanMessageBatch"
	msgSpanMessage  = "PSpanMessage"
	msgSpan         = "PSpan"
	msgChunk        = "PSpanChunk"
	msgStatMessage  = "PStatMessage"
	msgStatBatch    = "PAgentStatBatch"
	msgURIStat      = "PAgentUriStat"
	msgCmdHandshake = "PCmdMessage"
)

// record is what one agent sent that the collector accepted, and what failed. Batch
// replies arrive on several goroutines, hence the lock.
type record struct {
	mu           sync.Mutex
	sent         gen.Tally
	transactions int64
	rejected     int64 // spans a partial_success answer rejected
	lostSpans    int64 // span messages of failed calls
	messages     map[string]int64
	errors       map[string]int64  // by gRPC code
	firstErr     map[string]string // the first error of each code, for people
}

func newRecord() *record {
	return &record{messages: map[string]int64{}, errors: map[string]int64{}, firstErr: map[string]string{}}
}

// count records n accepted messages of a kind.
func (r *record) count(name string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages[name] += n
}

// spans records span messages the collector took, in one batch when batch is true.
func (r *record) spans(ms []*pb.PSpanMessage, batch bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if batch {
		r.messages[msgBatch]++
	}
	before := r.sent
	r.sent.AddAll(ms)
	r.messages[msgSpanMessage] += int64(len(ms))
	r.messages[msgSpan] += r.sent.Spans - before.Spans
	r.messages[msgChunk] += r.sent.Chunks - before.Chunks
}

// fail records a failed call and the span messages it lost.
func (r *record) fail(err error, lost int) {
	code := status.Code(err)
	if errors.Is(err, io.EOF) {
		code = codes.Unavailable // a stream the server ended: Send reports io.EOF
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[code.String()]++
	if _, seen := r.firstErr[code.String()]; !seen {
		r.firstErr[code.String()] = err.Error()
	}
	r.lostSpans += int64(lost)
}

func (r *record) reject(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected += n
}

func (r *record) transaction() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.transactions++
}

// Summary is a run's result; its JSON is ppload's last stdout line.
type Summary struct {
	gen.Tally
	Transactions int64             `json:"transactions"`
	Batches      int64             `json:"batches"`
	SpanMessages int64             `json:"span_messages"`
	Rejected     int64             `json:"rejected"`
	LostSpans    int64             `json:"lost_span_messages"`
	Errors       map[string]int64  `json:"errors"`
	FirstErrors  map[string]string `json:"first_errors,omitempty"`
	Messages     map[string]int64  `json:"messages"`
	Agents       int               `json:"agents"`
	Transport    string            `json:"transport"`
	EventsPer    int               `json:"events_per_span"`
	Seed         uint64            `json:"seed"`
	RunID        string            `json:"run_id"`
	DurationS    float64           `json:"duration_s"`
	SpansPerS    float64           `json:"spans_per_s"`
	EventsPerS   float64           `json:"events_per_s"`
	PerAgent     []AgentSummary    `json:"-"`
}

// AgentSummary is one agent's part.
type AgentSummary struct {
	ID, App      string
	Sent         gen.Tally
	Transactions int64
	Batches      int64
	Errors       int64
}

// add merges one agent's record into the summary.
func (s *Summary) add(id gen.Agent, r *record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Tally.Merge(r.sent)
	s.Transactions += r.transactions
	s.Rejected += r.rejected
	s.LostSpans += r.lostSpans
	var errs int64
	for k, v := range r.errors {
		s.Errors[k] += v
		errs += v
	}
	for k, v := range r.firstErr {
		if _, seen := s.FirstErrors[k]; !seen {
			s.FirstErrors[k] = v
		}
	}
	for k, v := range r.messages {
		s.Messages[k] += v
	}
	s.Batches = s.Messages[msgBatch]
	s.SpanMessages = s.Messages[msgSpanMessage]
	s.PerAgent = append(s.PerAgent, AgentSummary{
		ID: id.ID, App: id.Role.App(), Sent: r.sent, Transactions: r.transactions,
		Batches: r.messages[msgBatch], Errors: errs,
	})
}

// finish sets the rates once the duration is known.
func (s *Summary) finish(seconds float64) {
	s.DurationS = seconds
	if seconds > 0 {
		s.SpansPerS = float64(s.Spans) / seconds
		s.EventsPerS = float64(s.Events) / seconds
	}
}

// WriteReport prints the per-agent lines and the totals for people; the JSON line is the
// caller's.
func (s *Summary) WriteReport(w io.Writer) {
	for _, a := range s.PerAgent {
		fmt.Fprintf(w, "agent %-20s %-10s spans %8d events %9d chunks %6d async %6d error_spans %6d transactions %8d batches %7d errors %d\n",
			a.ID, a.App, a.Sent.Spans, a.Sent.Events, a.Sent.Chunks, a.Sent.AsyncChunks, a.Sent.ErrorSpans, a.Transactions, a.Batches, a.Errors)
	}
	fmt.Fprintf(w, "total: %d agents, %s, %d spans (%d linked children, %d with errors), %d events, %d chunks (%d async), %d batches, %d rejected, %d lost, errors %v\n",
		s.Agents, s.Transport, s.Spans, s.ChildSpans, s.ErrorSpans, s.Events, s.Chunks, s.AsyncChunks, s.Batches, s.Rejected, s.LostSpans, s.Errors)
	for code, msg := range s.FirstErrors {
		fmt.Fprintf(w, "first %s error: %s\n", code, msg)
	}
	fmt.Fprintf(w, "in %.2f s: %.0f spans/s, %.0f events/s\n", s.DurationS, s.SpansPerS, s.EventsPerS)
}
