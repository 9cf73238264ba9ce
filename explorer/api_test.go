package explorer_test

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
)

type txnList struct {
	Total        int `json:"total"`
	Transactions []struct {
		TraceID    string  `json:"trace_id"`
		App        string  `json:"app"`
		URL        string  `json:"url"`
		Status     int     `json:"status"`
		DurationMs float64 `json:"duration_ms"`
		Error      bool    `json:"error"`
	} `json:"transactions"`
}

type treeRow struct {
	SpanID   string  `json:"span_id"`
	ParentID string  `json:"parent_id"`
	Depth    int     `json:"depth"`
	App      string  `json:"app"`
	Args     string  `json:"args"`
	Type     string  `json:"type"`
	Error    bool    `json:"error"`
	ExecMs   float64 `json:"exec_ms"`
	ExecPct  float64 `json:"exec_pct"`
}

type trace struct {
	TraceID string    `json:"trace_id"`
	Spans   []treeRow `json:"spans"`
}

type serviceMap struct {
	Nodes []struct{ Name, Type string } `json:"nodes"`
	Edges []struct {
		From      string           `json:"from"`
		To        string           `json:"to"`
		ToType    string           `json:"to_type"`
		Calls     int64            `json:"calls"`
		Errors    int64            `json:"errors"`
		MaxMs     float64          `json:"max_ms"`
		Histogram map[string]int64 `json:"histogram"`
	} `json:"edges"`
}

// TestAPIOnRecordings replays each real agent recording into a whole apmkit and checks the
// explorer's API against the facts of the recording's manifest: every count below comes
// from the manifest, none from the code under test.
//
// Facts of the recordings (testdata/pinpoint/README.md): every request is one transaction,
// a frontend root span calling the backend once over HTTP; the backend runs SQL (one
// statement per request, 25 for /many); /error fails in both spans and in the backend's SQL
// statement, whose event carries the exception.
func TestAPIOnRecordings(t *testing.T) {
	for _, name := range []string{"go-agent-stream-100", "go-agent-batch-200", "go-agent-async-heavy"} {
		t.Run(name, func(t *testing.T) {
			s := replayed(t, recording(t, name))
			t.Run("transactions", func(t *testing.T) { checkTransactions(t, s) })
			t.Run("call trees", func(t *testing.T) { checkCallTrees(t, s) })
			t.Run("service map", func(t *testing.T) { checkServiceMap(t, s) })
			t.Run("agents and inspector", func(t *testing.T) { checkAgents(t, s) })
		})
	}
}

func (s *site) total(t *testing.T, kv ...string) int {
	t.Helper()
	var l txnList
	s.get(t, "/api/v1/transactions", s.inRange(append(kv, "limit", "0")...), &l)
	return l.Total
}

func checkTransactions(t *testing.T, s *site) {
	m := s.m
	var all txnList
	s.get(t, "/api/v1/transactions", s.inRange("limit", "10000"), &all)
	if want := m.Int("traces.transactions"); int64(all.Total) != want || int64(len(all.Transactions)) != want {
		t.Errorf("transactions: total %d, %d rows; want %d", all.Total, len(all.Transactions), want)
	}
	failedRoots := count(m, "traces.error_spans_by_application.frontend") // every root span is the frontend's
	checks := []struct {
		name string
		got  int
		want int64
	}{
		{"app=frontend", s.total(t, "app", "frontend"), m.Int("traces.root_spans")},
		{"app=backend (callee only)", s.total(t, "app", "backend"), 0},
		{"agent=frontend-01", s.total(t, "agent", "frontend-01"), m.Int("traces.root_spans")},
		{"error=true", s.total(t, "error", "true"), failedRoots},
		{"error=false", s.total(t, "error", "false"), m.Int("traces.root_spans") - failedRoots},
		{"status=500", s.total(t, "status", "500"), count(m, "run.http_results./error 500")},
		{"status=2xx", s.total(t, "status", "2xx"), m.Int("traces.root_spans") - count(m, "run.http_results./error 500")},
		// The root's exception says the backend failed; the SQL statement's says why.
		{"exception in a callee's span", s.total(t, "exception", "NO SUCH TABLE"), count(m, "traces.root_spans_by_rpc./error")},
		{"trace_id", s.total(t, "trace_id", all.Transactions[0].TraceID), 1},
		{"attr", s.total(t, "attr", "agent_id=frontend-01", "attr", "service=frontend"), m.Int("traces.root_spans")},
		{"outside the range", s.total(t, "from", "0", "to", "1000"), 0},
	}
	for rpc, n := range m.Ints("traces.root_spans_by_rpc") {
		checks = append(checks,
			struct {
				name string
				got  int
				want int64
			}{"url_exact=" + rpc, s.total(t, "url_exact", rpc), n})
	}
	for _, c := range checks {
		if int64(c.got) != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	// The slowest transactions are /slow (about 900 ms; the others take milliseconds).
	slow := count(m, "traces.root_spans_by_rpc./slow")
	if slow > 0 {
		var l txnList
		s.get(t, "/api/v1/transactions", s.inRange("sort", "duration", "limit", "1000"), &l)
		for i, tx := range l.Transactions[:slow] {
			if tx.URL != "/slow" {
				t.Errorf("slowest #%d is %s (%v ms), want /slow", i, tx.URL, tx.DurationMs)
			}
		}
		if got := s.total(t, "min_ms", "500"); int64(got) != slow {
			t.Errorf("min_ms=500: %d, want the %d /slow ones", got, slow)
		}
	}
}

// checkCallTrees reads every transaction's call tree.
func checkCallTrees(t *testing.T, s *site) {
	m := s.m
	var all txnList
	s.get(t, "/api/v1/transactions", s.inRange("limit", "10000"), &all)
	var rows, entries, links, failed, exitsByApp = 0, int64(0), int64(0), int64(0), map[string]int64{}
	manySQL := map[int]int{}
	for _, tx := range all.Transactions {
		var tr trace
		s.get(t, "/api/v1/transactions/"+url.PathEscape(tx.TraceID), nil, &tr)
		rows += len(tr.Spans)
		roots := 0
		sql := 0
		for i, r := range tr.Spans {
			switch {
			case r.Depth == 0:
				roots++
			case i == 0 || r.Depth > tr.Spans[i-1].Depth+1:
				t.Errorf("%s: row %d at depth %d after depth %d: not pre-order", tx.TraceID, i, r.Depth, tr.Spans[max(i-1, 0)].Depth)
			}
			if r.Type == "entry" {
				entries++
				if r.Depth > 0 {
					links++
				}
			}
			if r.Type == "exit" {
				exitsByApp[r.App]++
			}
			if r.Error {
				failed++
			}
			if strings.HasPrefix(r.Args, "SELECT name FROM users WHERE id = ?") {
				sql++
			}
		}
		root := tr.Spans[0]
		if roots != 1 || root.ParentID != "0" || root.Type != "entry" || (root.ExecMs > 0 && root.ExecPct != 100) {
			t.Errorf("%s: %d rows at depth 0, first %+v; want the root alone", tx.TraceID, roots, tr.Spans[0])
		}
		if tx.URL == "/many" {
			manySQL[sql]++
		}
	}
	want := map[string]int64{
		"rows":                          m.Int("messages.PSpan") + m.Int("traces.span_events.total"),
		"entry rows":                    m.Int("messages.PSpan"),
		"callee entries under a caller": m.Int("traces.parent_child_links.matching_same_transaction_and_parent"),
		// The frontend's exits are its HTTP calls, the backend's its SQL statements.
		"frontend exits": m.Int("traces.parent_child_links.events_with_nextSpanId"),
		"backend exits":  m.Int("traces.sql.sql_id_annotations"),
		// Failed spans (err) and events with an exception; every failed span carries one.
		"failed rows": m.Int("traces.exceptions.exceptionInfo_on_spans_and_events"),
	}
	got := map[string]int64{"rows": int64(rows), "entry rows": entries, "callee entries under a caller": links,
		"frontend exits": exitsByApp["frontend"], "backend exits": exitsByApp["backend"], "failed rows": failed}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %d, want %d", k, got[k], w)
		}
	}
	if n := count(m, "traces.root_spans_by_rpc./many"); n > 0 && (len(manySQL) != 1 || int64(manySQL[25]) != n) {
		t.Errorf("/many call trees by their number of SQL rows: %v, want %d with 25", manySQL, n)
	}
}

func checkServiceMap(t *testing.T, s *site) {
	m := s.m
	var sm serviceMap
	s.get(t, "/api/v1/servicemap", s.inRange(), &sm)
	sqlFailures := m.Int("traces.exceptions.exceptionInfo_on_spans_and_events") - m.Int("traces.error_spans")
	type counts struct{ calls, errors int64 }
	want := map[string]counts{
		"USER>frontend":    {m.Int("traces.root_spans"), count(m, "traces.error_spans_by_application.frontend")},
		"frontend>backend": {m.Int("traces.spans_by_application.backend"), count(m, "traces.error_spans_by_application.backend")},
		"backend>database": {m.Int("traces.sql.sql_id_annotations"), sqlFailures},
	}
	got := map[string]counts{}
	for _, e := range sm.Edges {
		to := e.To
		if e.ToType == "database" {
			to = "database"
		}
		got[e.From+">"+to] = counts{e.Calls, e.Errors}
		sum := int64(0)
		for _, n := range e.Histogram {
			sum += n
		}
		if sum != e.Calls || e.Histogram["Error"] != e.Errors || len(e.Histogram) != 5 {
			t.Errorf("%s -> %s: histogram %v for %d calls, %d errors", e.From, e.To, e.Histogram, e.Calls, e.Errors)
		}
	}
	if len(got) != len(want) {
		t.Errorf("edges %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("edge %s: %+v, want %+v", k, got[k], w)
		}
	}
	var types []string
	for _, n := range sm.Nodes {
		types = append(types, n.Type+":"+n.Name)
	}
	sort.Strings(types)
	if len(types) != 4 || types[0] != "app:backend" || types[1] != "app:frontend" || !strings.HasPrefix(types[2], "database:") || types[3] != "user:USER" {
		t.Errorf("nodes %v", types)
	}
}

func checkAgents(t *testing.T, s *site) {
	m := s.m
	var res struct {
		Agents []struct {
			AgentID string `json:"agent_id"`
			App     string `json:"app"`
			StartMs int64  `json:"start_ms"`
		} `json:"agents"`
	}
	s.get(t, "/api/v1/agents", nil, &res)
	want := map[string]string{}
	for _, a := range agentsOf(m) {
		want[a.id] = a.app + "@" + a.start
	}
	got := map[string]string{}
	for _, a := range res.Agents {
		got[a.AgentID] = a.App + "@" + strconv.FormatInt(a.StartMs, 10)
	}
	if len(got) != len(want) {
		t.Errorf("agents %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("agent %s: %s, want %s", id, got[id], w)
		}
	}
	samples := int64(0)
	for id := range want {
		var insp struct {
			Samples int `json:"samples"`
			Charts  []struct {
				Name   string `json:"name"`
				Series []struct {
					Name   string       `json:"name"`
					Points [][2]float64 `json:"points"`
				} `json:"series"`
			} `json:"charts"`
		}
		s.get(t, "/api/v1/inspector", s.inRange("agent", id), &insp)
		samples += int64(insp.Samples)
		if len(insp.Charts) == 0 || insp.Charts[0].Name != "heap" || len(insp.Charts[0].Series[0].Points) != insp.Samples {
			t.Errorf("%s: inspector charts %+v", id, insp.Charts)
		}
	}
	if want := m.Int("messages.PAgentStat_entries_in_batches"); samples != want {
		t.Errorf("inspector samples of all agents: %d, want %d", samples, want)
	}
}

type manifestAgent struct{ id, app, start string }

func agentsOf(m replay.Manifest) []manifestAgent {
	raw, _ := m.Get("agents")
	var out []manifestAgent
	for _, a := range raw.([]any) {
		a := a.(map[string]any)
		out = append(out, manifestAgent{a["agentid"].(string), a["applicationname"].(string), a["starttime"].(string)})
	}
	return out
}

// count is a number of the manifest, 0 when the recording has none (the async-heavy one
// has no /error and no /slow requests).
func count(m replay.Manifest, path string) int64 {
	if _, ok := m.Get(path); !ok {
		return 0
	}
	return m.Int(path)
}
