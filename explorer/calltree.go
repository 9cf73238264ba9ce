package explorer

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/tracestore"
)

// treeRow is one row of a call tree, in the columns Pinpoint users read: where the time
// went (exec), how much of it the method spent itself (self, without its calls), and the
// wait since the row before (gap).
type treeRow struct {
	SpanID      string  `json:"span_id"`
	ParentID    string  `json:"parent_id"`
	Depth       int     `json:"depth"`
	App         string  `json:"app"`
	AgentID     string  `json:"agent_id"`
	AgentName   string  `json:"agent_name"`
	Method      string  `json:"method"`
	Args        string  `json:"args"`
	StartMs     float64 `json:"start_ms"`
	GapMs       float64 `json:"gap_ms"`
	ExecMs      float64 `json:"exec_ms"`
	ExecPct     float64 `json:"exec_pct"`
	SelfMs      float64 `json:"self_ms"`
	Type        string  `json:"type"`
	ServiceType string  `json:"service_type"`
	Error       bool    `json:"error"`
	Exception   string  `json:"exception"`
}

// callTree orders a trace's spans as a tree in pre-order: each span under its parent, the
// children by start time, then by the order they were stored in (a Pinpoint span's events
// in their sequence). Spans whose parent is not in the store (a caller not sampled, a
// span still to come) are roots of their own, after the trace's root.
//
// gap is a row's start minus its parent's start when the row before it is its parent,
// else minus the end of the row before it (negative when they overlap: async work).
// self is exec minus the exec of the row's synchronous children (async invocations run
// beside their parent, so they are not its time).
//
// Spans whose ids form a cycle (corrupt data) cannot hang from a root: they come last, flat.
func callTree(spans []tracestore.Span) []treeRow {
	children, roots := link(spans)
	var total int64 // the transaction's time: exec_pct's 100 %
	if len(roots) > 0 {
		total = spans[roots[0]].DurationUs
	}
	rows := make([]treeRow, 0, len(spans))
	visited := make([]bool, len(spans))
	type item struct{ i, depth int }
	stack := make([]item, 0, 64) // iterative: a chain of 10,000 calls must not overflow
	for _, r := range slices.Backward(roots) {
		stack = append(stack, item{r, 0})
	}
	prev := -1
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		s := &spans[it.i]
		visited[it.i] = true
		rows = append(rows, row(s, it.depth, total, gap(spans, prev, it.i), selfTime(spans, s, children[it.i])))
		prev = it.i
		for _, c := range slices.Backward(children[it.i]) {
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	for i := range spans {
		if !visited[i] {
			rows = append(rows, row(&spans[i], 0, total, 0, ms(spans[i].DurationUs)))
		}
	}
	return rows
}

// link returns each span's children (ordered) and the roots: the spans without a parent
// in the trace, the real root (parent 0) first.
func link(spans []tracestore.Span) (children [][]int, roots []int) {
	byID := make(map[int64]int, len(spans))
	for i := range spans {
		byID[spans[i].SpanID] = i
	}
	children = make([][]int, len(spans))
	for i := range spans {
		p, ok := byID[spans[i].ParentID]
		if spans[i].ParentID == 0 || !ok || p == i {
			roots = append(roots, i)
			continue
		}
		children[p] = append(children[p], i)
	}
	byStart := func(a, b int) int {
		return cmp.Or(cmp.Compare(spans[a].StartUs, spans[b].StartUs), cmp.Compare(spans[a].Ordinal, spans[b].Ordinal))
	}
	for _, c := range children {
		slices.SortFunc(c, byStart)
	}
	slices.SortFunc(roots, func(a, b int) int {
		realA, realB := spans[a].ParentID == 0, spans[b].ParentID == 0
		if realA != realB {
			if realA {
				return -1
			}
			return 1
		}
		return byStart(a, b)
	})
	return children, roots
}

func gap(spans []tracestore.Span, prev, i int) float64 {
	if prev < 0 {
		return 0
	}
	p, s := &spans[prev], &spans[i]
	if s.ParentID == p.SpanID {
		return ms(s.StartUs - p.StartUs)
	}
	return ms(s.StartUs - (p.StartUs + p.DurationUs))
}

func selfTime(spans []tracestore.Span, s *tracestore.Span, children []int) float64 {
	self := s.DurationUs
	for _, c := range children {
		if spans[c].ServiceType != "ASYNC" {
			self -= spans[c].DurationUs
		}
	}
	return ms(max(self, 0))
}

func row(s *tracestore.Span, depth int, totalUs int64, gapMs, selfMs float64) treeRow {
	pct := 0.0
	if totalUs > 0 {
		pct = float64(s.DurationUs) * 100 / float64(totalUs)
	}
	return treeRow{
		SpanID: strconv.FormatInt(s.SpanID, 10), ParentID: strconv.FormatInt(s.ParentID, 10), Depth: depth,
		App: s.App, AgentID: s.AgentID, AgentName: s.AgentName, Method: cmp.Or(s.Operation, s.ServiceType), Args: args(s),
		StartMs: ms(s.StartUs), GapMs: gapMs, ExecMs: ms(s.DurationUs), ExecPct: pct, SelfMs: selfMs,
		Type: s.Kind, ServiceType: s.ServiceType, Error: s.Error, Exception: s.Exception(),
	}
}

// schemaFields are the fields of the span schema that are not annotations.
var schemaFields = map[string]bool{"db_sql_bind_values": true, "remote_addr": true, "parent_application": true,
	"acceptor_host": true, "http_url_raw": true, "error_stack": true, "annotation_overflow": true}

// args is what a row was called with: the SQL and its bind values, the URL called or
// served, the resource when it says more than the method, then the annotations.
func args(s *tracestore.Span) string {
	var parts []string
	switch {
	case s.Attr("db_sql_bind_values") != "":
		parts = append(parts, s.Resource+" (bind: "+s.Attr("db_sql_bind_values")+")")
	case s.Kind == tracestore.KindExit && s.Attr("http_url") != "":
		parts = append(parts, strings.TrimSpace(s.Attr("http_method")+" "+cmp.Or(s.Attr("http_url_raw"), s.Attr("http_url"))))
	case s.Kind == tracestore.KindEntry:
		parts = append(parts, cmp.Or(s.Attr("http_url_raw"), s.Resource))
		if addr := s.Attr("remote_addr"); addr != "" {
			parts = append(parts, "from "+addr)
		}
	case s.Resource != s.Operation:
		parts = append(parts, s.Resource)
	}
	for _, a := range s.Attrs {
		if !schemaFields[a.Key] {
			parts = append(parts, a.Key+"="+a.Value)
		}
	}
	return strings.Join(parts, "  ")
}
