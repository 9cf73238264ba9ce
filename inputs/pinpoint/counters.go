package pinpoint

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/trace"
)

// msgType is a kind of message the input counts. The names are the Pinpoint message names
// the fixture manifests use, so tests compare them directly.
type msgType int

const (
	msgAgentInfo msgType = iota
	msgPing
	msgAPIMeta
	msgSQLMeta
	msgSQLUIDMeta
	msgStringMeta
	msgExceptionMeta
	msgSpanMessageBatch
	msgSpanMessage
	msgSpan
	msgSpanChunk
	msgStatMessage
	msgAgentStat
	msgAgentStatBatch
	msgAgentUriStat
	msgProfilerMetric
	msgCmdMessage
	numMsgTypes
)

var msgTypeNames = [numMsgTypes]string{
	"PAgentInfo", "PPing", "PApiMetaData", "PSqlMetaData", "PSqlUidMetaData", "PStringMetaData",
	"PExceptionMetaData", "PSpanMessageBatch", "PSpanMessage", "PSpan", "PSpanChunk", "PStatMessage", "PAgentStat",
	"PAgentStatBatch", "PAgentUriStat", "PProfilerMetric", "PCmdMessage",
}

func (t msgType) String() string { return msgTypeNames[t] }

// Reasons a message is rejected (counted, never fatal to a stream).
const (
	reasonDecode       = "decode_error"
	reasonInvalid      = "invalid_message"
	reasonHeader       = "invalid_header"
	reasonConsumer     = "consumer_error"
	reasonStore        = "cache_error"
	reasonPanic        = "panic"
	reasonUnknownOneof = "unknown_message_kind"
	reasonStopping     = "stopping" // a span or stat call refused because the input stops
)

// Why a message was malformed (apmkit_pinpoint_malformed_messages_total's reason label).
// Such a message is counted and skipped: on a stream the agent is still answered OK at the
// end, so this metric is where it shows.
const (
	malformedNotProtobuf   = "not_protobuf"        // not protobuf wire format (truncated, bad tag or length)
	malformedUTF8          = "invalid_utf8"        // a string field is not valid UTF-8
	malformedTooDeep       = "too_deep"            // nested deeper than the decoder allows
	malformedEmpty         = "empty"               // no span, chunk or stat in it (an unknown kind)
	malformedVersion       = "unsupported_version" // a span or chunk of a version other than 1
	malformedNoTransaction = "no_transaction_id"   // a span or chunk without a transaction id
)

// decodeReason is the malformed reason of a protobuf decode error.
func decodeReason(err error) string {
	var utf8 interface{ InvalidUTF8() bool }
	switch {
	case errors.As(err, &utf8) && utf8.InvalidUTF8():
		return malformedUTF8
	case strings.Contains(err.Error(), "recursion depth"):
		return malformedTooDeep
	}
	return malformedNotProtobuf
}

// malformed counts a malformed message received by method (the sender's own error count
// is its reject).
func (in *Input) malformed(method, reason string) {
	in.counters.malformed.WithLabelValues(method, reason).Inc()
}

// maxAgents bounds the per-agent counters kept for /v1/stats; the least recently seen
// agent is forgotten first.
const maxAgents = 10_000

// counters are the input's self-metrics: Prometheus for /metrics and per-agent state for
// /v1/stats.
type counters struct {
	messages  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	malformed *prometheus.CounterVec
	panics    *prometheus.CounterVec
	connected prometheus.Gauge

	total   [numMsgTypes]atomic.Int64
	byType  [numMsgTypes]prometheus.Counter // resolved once: counting is on every message
	rejects sync.Map                        // reason -> *atomic.Int64

	mu     sync.Mutex
	agents *lru.Cache[meta.AgentKey, *agentState]
}

// agentState is what /v1/stats shows of one agent run.
type agentState struct {
	sender      meta.Sender
	counts      [numMsgTypes]atomic.Int64
	errors      atomic.Int64
	lastSeen    atomic.Int64 // unix ns
	pingStreams atomic.Int32
	// streams counts every open stream of the run (ping, span, stat, command): the run is
	// connected while any is open, since an agent reopens a stream only when it next uses
	// it (the Go agent's ping stream, on its next tick, while its spans flow).
	streams atomic.Int32
}

func newCounters(reg prometheus.Registerer) (*counters, error) {
	c := &counters{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apmkit_pinpoint_messages_total", Help: "Pinpoint messages received, by type.",
		}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apmkit_pinpoint_rejected_total", Help: "Pinpoint messages or calls rejected, by reason.",
		}, []string{"reason"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apmkit_pinpoint_malformed_messages_total",
			Help: "Malformed Pinpoint messages counted and skipped, by method and what is wrong with them.",
		}, []string{"method", "reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apmkit_pinpoint_handler_panics_total", Help: "Recovered panics in gRPC handlers, by method.",
		}, []string{"method"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apmkit_pinpoint_connected_agents", Help: "Agents with an open PingSession.",
		}),
	}
	for t := msgType(0); t < numMsgTypes; t++ {
		c.byType[t] = c.messages.WithLabelValues(t.String())
	}
	agents, err := lru.New[meta.AgentKey, *agentState](maxAgents)
	if err != nil {
		return nil, err
	}
	c.agents = agents
	if reg != nil {
		for _, col := range []prometheus.Collector{c.messages, c.rejected, c.malformed, c.panics, c.connected} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// agent returns the state of a sender, creating it on first sight.
func (c *counters) agent(s *meta.Sender) *agentState {
	if a, ok := c.agents.Get(s.AgentKey); ok {
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.agents.Get(s.AgentKey); ok {
		return a
	}
	a := &agentState{sender: *s}
	c.agents.Add(s.AgentKey, a)
	return a
}

// count records one received message of a sender.
func (c *counters) count(s *meta.Sender, t msgType) {
	c.total[t].Add(1)
	c.byType[t].Inc()
	if s != nil {
		a := c.agent(s)
		a.counts[t].Add(1)
		a.lastSeen.Store(time.Now().UnixNano())
	}
}

// reject records a rejected message or call.
func (c *counters) reject(s *meta.Sender, reason string) { c.rejectN(s, reason, 1) }

// rejectN records n rejected items of one reason.
func (c *counters) rejectN(s *meta.Sender, reason string, n int) {
	v, _ := c.rejects.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(int64(n))
	c.rejected.WithLabelValues(reason).Add(float64(n))
	if s != nil {
		c.agent(s).errors.Add(int64(n))
	}
}

// Stats is the input's part of /v1/stats.
type Stats struct {
	Listeners []string         `json:"listeners"`
	Messages  map[string]int64 `json:"messages"`
	Rejected  map[string]int64 `json:"rejected"`
	Agents    []AgentStats     `json:"agents"`
	Trace     *trace.Stats     `json:"trace,omitempty"`
	// Budget is the receive budget; Connections the open agent connections.
	Budget      *BudgetStats `json:"receive_budget,omitempty"`
	Connections int64        `json:"connections"`
}

// AgentStats is one agent run in /v1/stats.
type AgentStats struct {
	AgentID         string           `json:"agent_id"`
	AgentName       string           `json:"agent_name"`
	ApplicationName string           `json:"application"`
	StartTime       int64            `json:"start_time"`
	Connected       bool             `json:"connected"`
	LastSeen        time.Time        `json:"last_seen"`
	Messages        map[string]int64 `json:"messages"`
	Errors          int64            `json:"errors"`
}

func (c *counters) snapshot() Stats {
	st := Stats{Messages: countMap(&c.total), Rejected: map[string]int64{}, Agents: []AgentStats{}}
	c.rejects.Range(func(k, v any) bool {
		st.Rejected[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	for _, a := range c.agents.Values() {
		st.Agents = append(st.Agents, AgentStats{
			AgentID: a.sender.AgentID, AgentName: a.sender.AgentName, ApplicationName: a.sender.ApplicationName,
			StartTime: a.sender.StartTime, Connected: a.streams.Load() > 0,
			LastSeen: time.Unix(0, a.lastSeen.Load()).UTC(), Messages: countMap(&a.counts), Errors: a.errors.Load(),
		})
	}
	sort.Slice(st.Agents, func(i, j int) bool {
		if st.Agents[i].ApplicationName != st.Agents[j].ApplicationName {
			return st.Agents[i].ApplicationName < st.Agents[j].ApplicationName
		}
		return st.Agents[i].AgentID < st.Agents[j].AgentID
	})
	return st
}

func countMap(counts *[numMsgTypes]atomic.Int64) map[string]int64 {
	m := map[string]int64{}
	for t := msgType(0); t < numMsgTypes; t++ {
		if n := counts[t].Load(); n > 0 {
			m[t.String()] = n
		}
	}
	return m
}
