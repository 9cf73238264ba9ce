package explorer_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/apmkit/apmkit/explorer"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/tracestore"
)

// chromium is Debian's package (CI installs it: .ci/run).
const chromium = "/usr/bin/chromium"

// browser is the one Chromium process every browser test uses: each test opens a tab.
// TestMain closes it.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc // the allocator
	err    error
}

func startBrowser() {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 800),
		// Tests only talk to 127.0.0.1: no proxy, no background fetches.
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root otherwise
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, _ := chromedp.NewContext(alloc)
	browser.ctx, browser.cancel = ctx, cancel
	browser.err = chromedp.Do(ctx) // starts the browser
}

func closeBrowser() {
	if browser.ctx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(browser.ctx, 10*time.Second)
	defer cancel()
	_ = chromedp.Cancel(ctx)
	browser.cancel()
}

// tab opens a tab of 1280x800 in the shared browser, closed when the test ends. Without
// Chromium the test is skipped, except in CI, where it fails.
func tab(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser tests need %s in CI (Debian package chromium): %v", chromium, err)
		}
		t.Skipf("no %s: browser tests skipped (install Debian's chromium package)", chromium)
	}
	browser.once.Do(startBrowser)
	if browser.err != nil {
		t.Fatalf("start chromium: %v", browser.err)
	}
	ctx, closeTab := chromedp.NewContext(browser.ctx)
	t.Cleanup(closeTab)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// screenshot writes the tab as PNG into $APMKIT_SCREENSHOTS (a test artifact), else into
// the test's temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("APMKIT_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// TestBrowser replays a recording into apmkit and reads it in Chromium the way a user
// does: the transaction list, a deep link to a call tree, the server map, the inspector.
// The counts come from the recording's manifest.
func TestBrowser(t *testing.T) {
	ctx := tab(t)
	s := replayed(t, recording(t, "go-agent-stream-100"))
	t.Run("the list shows the recording's transactions", func(t *testing.T) { browseList(t, ctx, s) })
	t.Run("a deep link shows the call tree and its SQL", func(t *testing.T) { browseCallTree(t, ctx, s) })
	t.Run("the server map shows the edges and their counts", func(t *testing.T) { browseServiceMap(t, ctx, s) })
	t.Run("the inspector charts the agent's stats", func(t *testing.T) { browseInspector(t, ctx, s) })
}

func browseList(t *testing.T, ctx context.Context, s *site) {
	m := s.m
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/?from=%d&to=%d&limit=1000", s.base, s.from, s.to)),
		chromedp.WaitVisible("#transactions tbody tr"))
	rows := eval[int](t, ctx, `document.querySelectorAll("#transactions tbody tr").length`)
	failed := eval[int](t, ctx, `document.querySelectorAll("#transactions tbody tr.failed").length`)
	summary := eval[string](t, ctx, `document.querySelector(".summary strong").textContent`)
	if int64(rows) != m.Int("traces.transactions") || int64(failed) != m.Int("traces.error_spans_by_application.frontend") ||
		summary != fmt.Sprintf("%d transactions", m.Int("traces.transactions")) {
		t.Errorf("list: %d rows, %d failed, %q; want %d, %d", rows, failed, summary, m.Int("traces.transactions"), m.Int("traces.error_spans_by_application.frontend"))
	}
	screenshot(t, ctx, "transactions")

	// Drag over the scatter chart from the start of the range to its end, from its top
	// down to 450 ms: that selects the /slow transactions (about 900 ms; the others take
	// milliseconds).
	box := eval[struct{ X, Y, W, H float64 }](t, ctx, `(() => { const r = document.querySelector(".scatter canvas.overlay").getBoundingClientRect();
		return {X: r.left, Y: r.top, W: r.width, H: r.height}; })()`)
	const left, right, top, bottom = 56, 10, 8, 26 // the chart's margins (app.js)
	y450 := box.Y + box.H - bottom - 0.45*(box.H-top-bottom)
	buttons := func(p *input.DispatchMouseEventParams) { p.Buttons = 1 }
	do(t, ctx,
		chromedp.MouseEvent(chromedp.MousePressed, box.X+left+1, box.Y+top+1, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		chromedp.MouseEvent(chromedp.MouseMoved, box.X+box.W-right-1, y450, chromedp.ButtonLeft, buttons),
		chromedp.MouseEvent(chromedp.MouseReleased, box.X+box.W-right-1, y450, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		chromedp.WaitVisible(`#transactions tbody tr`))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	slow := eval[[]string](t, ctx, `[...document.querySelectorAll("#transactions tbody tr td:nth-child(4)")].map(td => td.textContent)`)
	if int64(len(slow)) != m.Int("traces.root_spans_by_rpc./slow") || strings.Count(strings.Join(slow, " "), "/slow") != len(slow) ||
		!strings.Contains(loc, "min_ms=") {
		t.Errorf("after the drag (%s): %v; want the %d /slow transactions", loc, slow, m.Int("traces.root_spans_by_rpc./slow"))
	}
}

func browseCallTree(t *testing.T, ctx context.Context, s *site) {
	var many txnList
	s.get(t, "/api/v1/transactions", s.inRange("url_exact", "/many", "limit", "1"), &many)
	id := many.Transactions[0].TraceID
	do(t, ctx, chromedp.Navigate(s.base+"/transaction/"+url.PathEscape(id)), chromedp.WaitVisible(".tree .row"))
	// The tree is virtual: scroll it through and collect the rows it shows.
	args := eval[[]string](t, ctx, `(async () => {
		const vp = document.querySelector(".tree .viewport"), seen = new Map();
		for (let top = 0; ; top += vp.clientHeight) {
			vp.scrollTop = top;
			await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
			for (const row of vp.querySelectorAll(".row")) if (row.style.display !== "none") seen.set(row.dataset.i, row.children[1].textContent);
			if (top + vp.clientHeight >= vp.scrollHeight) break;
		}
		vp.scrollTop = 0;
		return [...seen.values()];
	})()`)
	sql := 0
	for _, a := range args {
		if strings.HasPrefix(a, "SELECT name FROM users WHERE id = ?") && strings.Contains(a, "(bind: ") {
			sql++
		}
	}
	if sql != 25 { // the recordings' /many runs 25 SQL statements (testdata/pinpoint/README.md)
		t.Errorf("call tree of %s: %d SQL rows with bind values among %d rows, want 25", id, sql, len(args))
	}
	// The keyboard: End selects the last row (an SQL statement), its details show it.
	do(t, ctx, chromedp.Focus(".tree .viewport"), chromedp.KeyEvent(kb.End))
	details := eval[string](t, ctx, `document.querySelector(".details").textContent`)
	if !strings.Contains(details, "SELECT name FROM users WHERE id = ?") {
		t.Errorf("details of the last row: %q", details)
	}
	screenshot(t, ctx, "calltree-many")

	// The self-time highlight, on a /slow transaction: one method takes the 900 ms.
	var slow txnList
	s.get(t, "/api/v1/transactions", s.inRange("url_exact", "/slow", "limit", "1"), &slow)
	do(t, ctx, chromedp.Navigate(s.base+"/transaction/"+url.PathEscape(slow.Transactions[0].TraceID)),
		chromedp.WaitVisible(".tree .row"), chromedp.SendKeys(`.toolbar input[type=number]`, "500"))
	hot := eval[[]string](t, ctx, `[...document.querySelectorAll(".tree .row.hot")].map(r => r.children[0].textContent)`)
	if len(hot) != 1 || !strings.Contains(hot[0], "backend.slowWork") {
		t.Errorf("rows with self >= 500 ms: %v, want backend.slowWork alone", hot)
	}
	screenshot(t, ctx, "calltree-slow")
}

func browseServiceMap(t *testing.T, ctx context.Context, s *site) {
	m := s.m
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/servicemap?from=%d&to=%d", s.base, s.from, s.to)), chromedp.WaitVisible(".map .edge"))
	edges := eval[[][3]string](t, ctx, `[...document.querySelectorAll(".map .edge")].map(g => [g.dataset.from, g.dataset.to, g.querySelector("text").textContent])`)
	want := map[string]int64{
		"USER>frontend":    m.Int("traces.root_spans"),
		"frontend>backend": m.Int("traces.spans_by_application.backend"),
		"backend>database": m.Int("traces.sql.sql_id_annotations"),
	}
	got := map[string]string{}
	for _, e := range edges {
		key := e[0] + ">" + e[1]
		if e[0] == "backend" {
			key = "backend>database" // the database is named by the agent's destination id
		}
		got[key] = e[2]
	}
	if len(got) != len(want) {
		t.Errorf("edges %v, want %v", got, want)
	}
	for k, calls := range want {
		if !strings.HasPrefix(got[k], fmt.Sprintf("%d calls", calls)) {
			t.Errorf("edge %s labelled %q, want %d calls", k, got[k], calls)
		}
	}
	// Tab to the first edge and open it with Enter: its histogram shows the failures.
	do(t, ctx, chromedp.Focus(`.map .edge[data-from="USER"]`), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(".hist"))
	failed := eval[string](t, ctx, `document.querySelector(".hist .Error span").textContent`)
	if failed != fmt.Sprint(m.Int("traces.error_spans_by_application.frontend")) {
		t.Errorf("USER -> frontend histogram: %s failed, want %d", failed, m.Int("traces.error_spans_by_application.frontend"))
	}
	screenshot(t, ctx, "servicemap")
}

func browseInspector(t *testing.T, ctx context.Context, s *site) {
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/inspector/frontend-01?from=%d&to=%d", s.base, s.from, s.to)),
		chromedp.WaitVisible(`[data-chart="heap"] polyline`))
	points := eval[int](t, ctx, `document.querySelector('[data-chart="heap"] polyline').getAttribute("points").split(" ").length`)
	charts := eval[[]string](t, ctx, `[...document.querySelectorAll("[data-chart]")].map(c => c.dataset.chart)`)
	// Each agent sent one PAgentStatBatch: half the recording's samples are frontend-01's.
	if int64(points) != s.m.Int("messages.PAgentStat_entries_in_batches")/2 || len(charts) < 5 {
		t.Errorf("heap chart: %d points; charts %v", points, charts)
	}
	screenshot(t, ctx, "inspector")
}

// TestBrowserLargeTrace opens a call tree of 10,000 spans: the page keeps a screenful of
// rows in the DOM whatever the trace's size, and the keyboard reaches the last row. The
// time it takes is logged, not asserted.
func TestBrowserLargeTrace(t *testing.T) {
	ctx := tab(t)
	const children, grandchildren = 99, 100 // 1 + 99 + 99*100 = 10,000 spans
	st, err := tracestore.Open(t.TempDir(), tracestore.Options{CheckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	enc := point.NewEncoder()
	add := func(id, parent int64, kind, op, resource string, startMs, durMs int64) {
		p := point.New("pinpoint", startMs*1e6)
		p.SetTag("service", "big")
		p.SetTag("agent_id", "big-1")
		p.SetTag("span_type", kind)
		p.SetTag("status", "ok")
		p.SetTag("operation", op)
		p.AddField(point.String("trace_id", "big-1^1^1"))
		p.AddField(point.String("span_id", fmt.Sprint(id)))
		p.AddField(point.String("parent_id", fmt.Sprint(parent)))
		p.AddField(point.String("resource", resource))
		p.AddField(point.Int("start", startMs*1000))
		p.AddField(point.Int("duration", durMs*1000))
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
	}
	const start = 1_800_000_000_000
	add(1, 0, "entry", "HTTP Server", "/batch", start, 20_000)
	for c := range int64(children) {
		add(100+c, 1, "local", fmt.Sprintf("Job.step%d()", c), "", start+c*200, 200)
		for g := range int64(grandchildren) {
			add(100_000+c*1000+g, 100+c, "exit", "ConnQuery", fmt.Sprintf("SELECT %d FROM t%d", g, c), start+c*200+g*2, 1)
		}
	}
	if err := st.Write(enc.Bytes()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(explorer.New(st, explorer.Options{}))
	defer srv.Close()

	began := time.Now()
	do(t, ctx, chromedp.Navigate(srv.URL+"/transaction/"+url.PathEscape("big-1^1^1")), chromedp.WaitVisible(".tree .row"))
	t.Logf("10,000-span call tree shown in %v", time.Since(began).Round(time.Millisecond))
	head := eval[string](t, ctx, `document.querySelector(".trace-head").textContent`)
	inDOM := eval[int](t, ctx, `document.querySelectorAll(".tree .row").length`)
	if !strings.Contains(head, "10000 span rows") || inDOM > 100 {
		t.Errorf("header %q, %d row elements in the DOM; want 10000 rows, at most 100 elements", head, inDOM)
	}
	began = time.Now()
	do(t, ctx, chromedp.Focus(".tree .viewport"), chromedp.KeyEvent(kb.End))
	t.Logf("End key on 10,000 rows: %v", time.Since(began).Round(time.Millisecond))
	details := eval[string](t, ctx, `document.querySelector(".details").textContent`)
	if !strings.Contains(details, fmt.Sprintf("SELECT %d FROM t%d", grandchildren-1, children-1)) {
		t.Errorf("the last row's details: %q", details)
	}
	screenshot(t, ctx, "calltree-10000")
}
