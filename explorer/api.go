package explorer

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/tracestore"
)

// Limits of one answer.
const (
	defaultLimit = 100
	maxLimit     = 10_000
	// maxSpans bounds a call tree's answer (and its memory): far beyond any real trace.
	maxSpans = 200_000
)

// transactionRow is one row of GET /api/v1/transactions.
type transactionRow struct {
	TraceID    string  `json:"trace_id"`
	App        string  `json:"app"`
	AgentID    string  `json:"agent_id"`
	URL        string  `json:"url"`
	Method     string  `json:"method"`
	Status     int     `json:"status"`
	StartMs    int64   `json:"start_ms"`
	DurationMs float64 `json:"duration_ms"`
	Error      bool    `json:"error"`
	Exception  string  `json:"exception"`
}

func (e *Explorer) transactions(w http.ResponseWriter, r *http.Request) {
	q, from, to, err := e.transactionQuery(newParams(r.URL.Query()))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	txns, total, err := e.store.Transactions(q)
	if err != nil {
		storeError(w, err)
		return
	}
	rows := make([]transactionRow, len(txns))
	for i, t := range txns {
		rows[i] = transactionRow{TraceID: t.TraceID, App: t.App, AgentID: t.AgentID, URL: t.URL, Method: t.Method,
			Status: t.Status, StartMs: t.StartUs / 1000, DurationMs: ms(t.DurationUs), Error: t.Error, Exception: t.Exception}
	}
	writeJSON(w, map[string]any{"transactions": rows, "total": total, "from": from, "to": to})
}

// transactionQuery reads the search parameters of GET /api/v1/transactions.
func (e *Explorer) transactionQuery(p *params) (q tracestore.Query, from, to int64, err error) {
	from, to = p.timeRange(e.opts.Now())
	q = tracestore.Query{FromUs: from * 1000, ToUs: to*1000 + 999,
		App: p.str("app"), Agent: p.str("agent"), URLPrefix: p.str("url"), URLExact: p.str("url_exact"),
		Method: p.str("method"), Exception: p.str("exception"), TraceID: p.str("trace_id")}
	q.Status, q.StatusClass = status(p)
	q.MinUs, q.MaxUs = max(p.millis("min_ms"), 0), p.millis("max_ms")
	if q.MaxUs >= 0 && q.MinUs > q.MaxUs {
		p.bad("min_ms is above max_ms")
	}
	q.Error = p.boolean("error")
	for _, a := range p.list("attr") {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			p.bad("attr: %q is not key=value", a)
		}
		q.Attrs = append(q.Attrs, tracestore.KV{Key: k, Value: v})
	}
	q.ByDuration = p.choice("sort", "start", "duration") == "duration"
	q.Limit = int(p.integer("limit", defaultLimit, 0, maxLimit))
	return q, from, to, p.err()
}

// status reads an HTTP status: a code (404) or a class (4xx).
func status(p *params) (code, class int) {
	s := p.str("status")
	if s == "" {
		return 0, 0
	}
	if len(s) == 3 && (s[1:] == "xx" || s[1:] == "XX") && s[0] >= '1' && s[0] <= '5' {
		return 0, int(s[0] - '0')
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		p.bad("status: %q is not an HTTP status (200) or class (5xx)", s)
	}
	return n, 0
}

func ms(us int64) float64 { return float64(us) / 1000 }

// storeError answers a failed read: 503 while the store is closed by a full disk (it opens
// by itself), 500 otherwise.
func storeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, tracestore.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, err.Error())
}

func (e *Explorer) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("trace_id")
	if err := newParams(r.URL.Query()).err(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	spans, truncated, err := e.store.Trace(id, maxSpans)
	if err != nil {
		storeError(w, err)
		return
	}
	if len(spans) == 0 {
		writeError(w, http.StatusNotFound, "no trace "+strconv.Quote(id)+" in the local store (never stored, sampled out, or past its retention)")
		return
	}
	writeJSON(w, map[string]any{"trace_id": id, "spans": callTree(spans), "truncated": truncated})
}

// edgeRow is one edge of GET /api/v1/servicemap.
type edgeRow struct {
	tracestore.Edge
	AvgMs float64 `json:"avg_ms"`
	MaxMs float64 `json:"max_ms"`
}

func (e *Explorer) serviceMap(w http.ResponseWriter, r *http.Request) {
	p := newParams(r.URL.Query())
	from, to := p.timeRange(e.opts.Now())
	if err := p.err(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sm, err := e.store.ServiceMap(from*1000, to*1000+999)
	if err != nil {
		storeError(w, err)
		return
	}
	edges := make([]edgeRow, len(sm.Edges))
	for i, ed := range sm.Edges {
		edges[i] = edgeRow{Edge: ed, AvgMs: ms(int64(ed.SumUs / max(ed.Calls, 1))), MaxMs: ms(int64(ed.MaxUs))}
	}
	nodes := sm.Nodes
	if nodes == nil {
		nodes = []tracestore.Node{}
	}
	writeJSON(w, map[string]any{"nodes": nodes, "edges": edges, "from": from, "to": to})
}

func (e *Explorer) agents(w http.ResponseWriter, r *http.Request) {
	p := newParams(r.URL.Query())
	app := p.str("app")
	if err := p.err(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	all, err := e.store.Agents()
	if err != nil {
		storeError(w, err)
		return
	}
	agents := []tracestore.Agent{}
	for _, a := range all {
		if app == "" || a.App == app {
			agents = append(agents, a)
		}
	}
	writeJSON(w, map[string]any{"agents": agents})
}

func (e *Explorer) inspector(w http.ResponseWriter, r *http.Request) {
	p := newParams(r.URL.Query())
	agent := p.str("agent")
	from, to := p.timeRange(e.opts.Now())
	if agent == "" {
		p.bad("agent: required (an agent id, see /api/v1/agents)")
	}
	if err := p.err(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	samples, err := e.store.Samples(agent, from, to)
	if err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, map[string]any{"agent_id": agent, "from": from, "to": to, "samples": len(samples), "charts": charts(samples)})
}
