package monitor

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	apmio "github.com/apmkit/apmkit/io"
)

// DefaultMaxAgents is how many agent rows a frame shows per input: a terminal holds a few
// dozen lines, and /v1/stats may list thousands of agent runs.
const DefaultMaxAgents = 40

// The frame fits a classic terminal: lines are cut at DefaultWidth columns, and the live
// view shows as many agent rows as leave the frame within DefaultHeight lines.
const (
	DefaultWidth  = 80
	DefaultHeight = 24
)

// RenderOptions says how a frame looks.
type RenderOptions struct {
	// Once renders a snapshot for scripts: totals instead of per-second rates, no hint
	// about refreshing.
	Once bool
	// MaxAgents caps the agent rows per input (connected agents first); 0 = DefaultMaxAgents.
	MaxAgents int
	// Interval is shown in the live view's footer.
	Interval time.Duration
	// Width cuts longer lines of the live view (with "…"), narrowing the name columns of
	// tables first; 0 = DefaultWidth (no limit with Once: scripts read whole lines),
	// negative = no limit.
	Width int
	// Height bounds the live view's lines by showing fewer agent rows (the others are
	// counted in a "+N more" line); 0 = DefaultHeight, negative = no limit. --once shows
	// up to MaxAgents rows whatever the height: its output is for scripts and pagers.
	Height int
}

// Render writes one frame for cur. prev is the snapshot taken just before it, for rates;
// nil (the first frame) shows "-" where a rate would be. Render writes no terminal escape
// codes: the live loop adds them, so the same text serves --once and the golden tests.
func Render(w io.Writer, cur, prev *Snapshot, opts RenderOptions) error {
	if opts.MaxAgents <= 0 {
		opts.MaxAgents = DefaultMaxAgents
	}
	if opts.Width == 0 && !opts.Once {
		opts.Width = DefaultWidth
	}
	if opts.Height == 0 {
		opts.Height = DefaultHeight
	}
	rows := opts.MaxAgents
	if !opts.Once && opts.Height > 0 && len(cur.Inputs) > 0 {
		// Lay the frame out without agent rows, then share the lines left among the
		// inputs (a table takes a header line on top of its rows).
		base := renderFrame(cur, prev, opts, 0)
		spare := opts.Height - strings.Count(base, "\n")
		rows = min(rows, max(0, spare/len(cur.Inputs)-1))
	}
	_, err := io.WriteString(w, renderFrame(cur, prev, opts, rows))
	return err
}

// renderFrame lays out a frame with at most rows agent rows per input.
func renderFrame(cur, prev *Snapshot, opts RenderOptions, rows int) string {
	r := &renderer{opts: opts, cur: cur, prev: prev, rate: newRates(cur, prev), rows: rows}
	r.header()
	for i := range cur.Inputs {
		r.input(&cur.Inputs[i])
	}
	if len(cur.Inputs) == 0 {
		r.line("")
		r.line("no input is running: enable one in conf.d or with ENV_DEFAULT_ENABLED_INPUTS=pinpoint")
	}
	r.io()
	if !opts.Once {
		from := ""
		if cur.URL != "" {
			from = " from " + cur.URL
		}
		r.line(fmt.Sprintf("every %s%s; /s = per second; Ctrl-C quits", orDefault(opts.Interval, time.Second), from))
	}
	return r.b.String()
}

type renderer struct {
	opts      RenderOptions
	cur, prev *Snapshot
	rate      rates
	rows      int // agent rows per input
	b         strings.Builder
}

// gap separates sections in --once; the live view has no lines to spare.
func (r *renderer) gap() {
	if r.opts.Once {
		r.line("")
	}
}

func (r *renderer) line(s string) {
	s = strings.TrimRight(s, " ")
	if r.opts.Width > 0 {
		s = truncate(s, r.opts.Width)
	}
	r.b.WriteString(s)
	r.b.WriteByte('\n')
}

func (r *renderer) header() {
	c := r.cur
	at := ""
	if !c.At.IsZero() {
		at = "  at " + c.At.Format("2006-01-02 15:04:05 MST")
	}
	r.line(fmt.Sprintf("apmkit %s on %s, up %s%s", c.Version, c.Hostname, c.Uptime, at))
	if c.URL != "" && r.opts.Once {
		r.line("from " + c.URL)
	}
	if r.opts.Once {
		r.line("one snapshot: counts are totals since apmkit started (the live view shows rates)")
	}
	for _, d := range c.Degraded {
		r.line("DEGRADED  " + d)
	}
}

// cacheText is what the IO line says of the cache: its size and, unless all is well, its
// state and refused writes.
func cacheText(c *Snapshot) string {
	cs := c.Cache
	if cs == nil || cs.State == "" {
		return fmt.Sprintf("cache %s on disk", bytesText(c.CacheBytes))
	}
	refused := ""
	if n := total(cs.Refused); n > 0 {
		refused = ", writes refused " + reasons(cs.Refused)
	}
	switch cs.State {
	case cache.StateDiskFull:
		return fmt.Sprintf("cache %s on disk, DISK FULL: %s free, reserve %s%s", bytesText(cs.SizeBytes), bytesText(cs.FreeBytes), bytesText(cs.ReserveBytes), refused)
	case cache.StateMemory:
		return fmt.Sprintf("cache %s IN MEMORY (degraded, lost at restart)%s", bytesText(cs.SizeBytes), refused)
	}
	if cs.Redis != nil {
		return redisCacheText(cs) + refused
	}
	return fmt.Sprintf("cache %s on disk%s", bytesText(cs.SizeBytes), refused)
}

// redisCacheText is cacheText for a cache in Redis: while Redis is unavailable, the writes
// kept in memory for it.
func redisCacheText(cs *cache.Stats) string {
	kept := fmt.Sprintf("%d writes (%s) kept in memory", cs.Redis.FallbackChanges, bytesText(cs.Redis.FallbackBytes))
	switch cs.State {
	case cache.StateRedisDown:
		return fmt.Sprintf("cache %s in redis, REDIS DOWN: %s", bytesText(cs.SizeBytes), kept)
	case cache.StateRedisCatchingUp:
		return fmt.Sprintf("cache %s in redis, catching up: %s", bytesText(cs.SizeBytes), kept)
	}
	return fmt.Sprintf("cache %s in redis", bytesText(cs.SizeBytes))
}

// input renders one input instance: its listeners and counters, then its agents.
func (r *renderer) input(in *Input) {
	r.gap()
	r.line(fmt.Sprintf("INPUT %s #%d  (%s)", in.Input, in.Instance, in.Source))
	var prevIn *Input
	if r.prev != nil {
		for i := range r.prev.Inputs {
			if p := &r.prev.Inputs[i]; p.Input == in.Input && p.Instance == in.Instance {
				prevIn = p
			}
		}
	}
	var prevSt *pinpoint.Stats
	var prevKept int64
	if prevIn != nil {
		prevSt, prevKept = prevIn.Pinpoint, prevIn.Pipeline.Kept
	}
	if in.Pinpoint != nil {
		r.pinpointSummary(in.Pinpoint, prevSt)
	}
	r.line(fmt.Sprintf("  %-11s points kept %s  dropped %d", "pipeline", r.count(in.Pipeline.Kept, prevKept, prevIn != nil), in.Pipeline.Dropped))
	if in.Pinpoint != nil {
		r.agents(in.Pinpoint, prevSt)
	}
}

// The counters the summary and the agent rows add up, by Pinpoint message name. A stat
// message (PStatMessage) is counted once whatever it holds: a batch of samples, URI stats.
var (
	spanMessages     = []string{"PSpan"}
	chunkMessages    = []string{"PSpanChunk"}
	statMessages     = []string{"PStatMessage"}
	metadataMessages = []string{"PApiMetaData", "PSqlMetaData", "PSqlUidMetaData", "PStringMetaData", "PExceptionMetaData"}
)

func sum(m map[string]int64, names []string) int64 {
	var n int64
	for _, k := range names {
		n += m[k]
	}
	return n
}

func (r *renderer) pinpointSummary(st, prev *pinpoint.Stats) {
	r.line(fmt.Sprintf("  %-11s %s", "listening", orText(strings.Join(st.Listeners, "  "), "(no listener)")))
	var pm map[string]int64
	if prev != nil {
		pm = prev.Messages
	}
	has := prev != nil
	r.line(fmt.Sprintf("  %-11s spans %s  chunks %s  stats %s",
		"received",
		r.count(sum(st.Messages, spanMessages), sum(pm, spanMessages), has),
		r.count(sum(st.Messages, chunkMessages), sum(pm, chunkMessages), has),
		r.count(sum(st.Messages, statMessages), sum(pm, statMessages), has)))
	r.line(fmt.Sprintf("  %-11s metadata %d  rejected %s", "", sum(st.Messages, metadataMessages), reasons(st.Rejected)))
	if t := st.Trace; t != nil {
		var unresolved []string
		for _, k := range slices.Sorted(maps.Keys(t.Unresolved)) {
			if n := t.Unresolved[k]; n > 0 {
				unresolved = append(unresolved, fmt.Sprintf("%s:%d", k, n))
			}
		}
		r.line(fmt.Sprintf("  %-11s spans: partial %d  pending %d  waited for metadata %d (now %d)",
			"traces", t.PartialSpans, t.PendingSpans, t.HeldForMetadata, t.Held))
		unres := ""
		if len(unresolved) > 0 {
			unres = "  placeholders " + strings.Join(unresolved, " ")
		}
		r.line(fmt.Sprintf("  %-11s late chunks %d%s", "", t.LateChunks, unres))
	}
}

// agents renders the agent table: connected agents first, then the most recently seen.
func (r *renderer) agents(st, prev *pinpoint.Stats) {
	connected := 0
	for _, a := range st.Agents {
		if a.Connected {
			connected++
		}
	}
	r.line(fmt.Sprintf("  %-11s %d known, %d connected", "agents", len(st.Agents), connected))
	if len(st.Agents) == 0 {
		return
	}
	agents := slices.Clone(st.Agents)
	slices.SortStableFunc(agents, func(a, b pinpoint.AgentStats) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	shown := agents[:min(len(agents), r.rows)]
	// Back to the API's order (application, agent id) so rows do not jump between frames.
	slices.SortFunc(shown, func(a, b pinpoint.AgentStats) int {
		return cmp.Or(cmp.Compare(a.ApplicationName, b.ApplicationName), cmp.Compare(a.AgentID, b.AgentID), cmp.Compare(a.StartTime, b.StartTime))
	})
	prevBy := map[agentKey]pinpoint.AgentStats{}
	if prev != nil {
		for _, a := range prev.Agents {
			prevBy[agentKey{a.AgentID, a.StartTime}] = a
		}
	}
	unit := "/S"
	if r.opts.Once {
		unit = ""
	}
	// AGE (since the run started) tells apart the runs of one agent id (each restart is a new run). Names give
	// way to the numbers when the table is too wide.
	t := table{right: []bool{false, false, false, false, false, true, true, true, true}, shrink: []bool{true, true}}
	t.add("APPLICATION", "AGENT ID", "AGE", "CONN", "SEEN", "SPANS"+unit, "CHUNKS"+unit, "STATS"+unit, "ERR")
	for _, a := range shown {
		p, has := prevBy[agentKey{a.AgentID, a.StartTime}]
		t.add(
			a.ApplicationName,
			a.AgentID,
			r.age(time.UnixMilli(a.StartTime)),
			yesNo(a.Connected),
			r.age(a.LastSeen),
			r.value(sum(a.Messages, spanMessages), sum(p.Messages, spanMessages), has),
			r.value(sum(a.Messages, chunkMessages), sum(p.Messages, chunkMessages), has),
			r.value(sum(a.Messages, statMessages), sum(p.Messages, statMessages), has),
			fmt.Sprint(a.Errors),
		)
	}
	if len(shown) > 0 {
		t.write(r, "  ")
	}
	if n := len(agents) - len(shown); n > 0 {
		r.line(fmt.Sprintf("  +%d more agent runs (disconnected or seen less recently; all in /v1/stats)", n))
	}
}

type agentKey struct {
	id    string
	start int64
}

// io renders the uploader: queue depth per category, then each output.
func (r *renderer) io() {
	c := r.cur
	r.gap()
	r.line(fmt.Sprintf("IO  (%s)", cacheText(c)))
	prevCat := map[string]apmio.CategoryStats{}
	prevOut := map[string]apmio.OutputStats{}
	if r.prev != nil {
		for _, cs := range r.prev.IO.Categories {
			prevCat[cs.Category] = cs
		}
		for _, o := range r.prev.IO.Outputs {
			prevOut[o.Name] = o
		}
	}
	unit := "/S"
	if r.opts.Once {
		unit = ""
	}
	ct := table{right: []bool{false, true, true, true, true}}
	ct.add("CATEGORY", "QUEUED POINTS", "POINTS IN"+unit, "REJECTED", "DROPPED")
	var losses []string
	for _, cs := range c.IO.Categories {
		rejected, dropped := total(cs.Rejected), total(cs.Dropped)
		if cs.PointsIn == 0 && cs.QueuePoints == 0 && rejected == 0 && dropped == 0 {
			continue // categories no input feeds (logging, object) are noise here
		}
		p, has := prevCat[cs.Category]
		ct.add(cs.Category, fmt.Sprint(cs.QueuePoints), r.value(cs.PointsIn, p.PointsIn, has),
			fmt.Sprint(rejected), fmt.Sprint(dropped))
		losses = appendReasons(losses, cs.Category+" rejected", cs.Rejected)
		losses = appendReasons(losses, cs.Category+" dropped", cs.Dropped)
	}
	if len(ct.rows) == 1 {
		r.line("  no points yet")
	} else {
		ct.write(r, "  ")
	}
	r.gap()
	ot := table{right: []bool{false, true, true, true, true, true, true, true}, shrink: []bool{true}}
	ot.add("OUTPUT", "POINTS"+unit, "BYTES"+unit, "BATCHES", "RETRY", "PERM", "SPILL", "DROPPED")
	for _, o := range c.IO.Outputs {
		p, has := prevOut[o.Name]
		bytesCol := bytesText(o.BytesSent)
		if !r.opts.Once {
			bytesCol = "-"
			if v, ok := r.rate.per(o.BytesSent, p.BytesSent, has); ok {
				bytesCol = bytesText(int64(v)) // a byte rate: whole bytes are enough
			}
		}
		ot.add(o.Name, r.value(o.PointsSent, p.PointsSent, has), bytesCol, fmt.Sprint(o.QueueBatches),
			fmt.Sprint(o.Retries), fmt.Sprint(o.PermanentErrors),
			fmt.Sprintf("%s (%d)", bytesText(o.SpillBytes), o.SpillBatches), fmt.Sprint(total(o.Dropped)))
		losses = appendReasons(losses, o.Name+" dropped", o.Dropped)
	}
	if len(ot.rows) == 1 {
		r.line("  no output")
	} else {
		ot.write(r, "  ")
	}
	for _, o := range c.IO.Outputs {
		state := ""
		if o.State != "" && o.State != "ok" { // failing, config_error: the last error says why
			state = "  [" + o.State + "]"
		} else if !r.opts.Once {
			continue // the live view lists only the outputs in trouble
		}
		r.line(fmt.Sprintf("  %s (%s) -> %s%s", o.Name, o.Type, o.URL, state))
	}
	if r.opts.Once { // the live view has the totals in its DROPPED columns
		for _, l := range losses {
			r.line("  " + l)
		}
	}
	for _, o := range c.IO.Outputs {
		if o.LastError != "" {
			when := r.age(o.LastErrorAt)
			if when != "now" && when != "never" && !r.cur.At.IsZero() {
				when += " ago"
			}
			r.line(fmt.Sprintf("  %s last error (%s): %s", o.Name, when, oneLine(o.LastError)))
		}
	}
}

// count is a counter for the summary lines: its total, plus its rate in the live view.
func (r *renderer) count(cur, prev int64, hasPrev bool) string {
	if r.opts.Once {
		return fmt.Sprint(cur)
	}
	if v, ok := r.rate.per(cur, prev, hasPrev); ok {
		return fmt.Sprintf("%d (%.1f/s)", cur, v)
	}
	return fmt.Sprintf("%d (-/s)", cur)
}

// value is a table cell: the total for --once, else the rate ("-" when unknown).
func (r *renderer) value(cur, prev int64, hasPrev bool) string {
	if r.opts.Once {
		return fmt.Sprint(cur)
	}
	if v, ok := r.rate.per(cur, prev, hasPrev); ok {
		return fmt.Sprintf("%.1f", v)
	}
	return "-"
}

// age says how long before the snapshot t was, in one word ("3s", "1m5s") so that table
// rows split on white space.
func (r *renderer) age(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "never"
	}
	if r.cur.At.IsZero() {
		return t.UTC().Format("15:04:05")
	}
	d := r.cur.At.Sub(t)
	if d < time.Second {
		return "now"
	}
	return shortDuration(d)
}

// rates turns counter differences into per-second values. The interval is the difference
// of the server's uptimes, not of the client's clock: it is measured where the counters are,
// so network delays do not skew it, and a smaller uptime reveals a restart.
type rates struct {
	dt float64
	ok bool
}

func newRates(cur, prev *Snapshot) rates {
	if prev == nil {
		return rates{}
	}
	dt := cur.UptimeSeconds - prev.UptimeSeconds
	return rates{dt: dt, ok: dt > 0}
}

// per is (cur-prev)/dt, unknown without a previous value or when the counter went down
// (the agent run or apmkit restarted).
func (r rates) per(cur, prev int64, hasPrev bool) (float64, bool) {
	if !r.ok || !hasPrev || cur < prev {
		return 0, false
	}
	return float64(cur-prev) / r.dt, true
}

// table aligns columns; widths are counted in runes so truncated names with "…" line up.
type table struct {
	rows   [][]string
	right  []bool // right-align column i (numbers)
	shrink []bool // column i may be cut (with "…") so the table fits the frame's width
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(r *renderer, indent string) {
	widths := make([]int, len(t.rows[0]))
	for _, row := range t.rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	if r.opts.Width > 0 {
		// Narrow the widest column that may shrink, one rune at a time, down to 8.
		total := len(indent) + 2*(len(widths)-1)
		for _, w := range widths {
			total += w
		}
		for ; total > r.opts.Width; total-- {
			widest := -1
			for i, w := range widths {
				if i < len(t.shrink) && t.shrink[i] && w > 8 && (widest < 0 || w > widths[widest]) {
					widest = i
				}
			}
			if widest < 0 {
				break
			}
			widths[widest]--
		}
	}
	for _, row := range t.rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range row {
			c = truncate(c, widths[i])
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i < len(t.right) && t.right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		r.line(b.String())
	}
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// reasons renders a by-reason counter map: "0", or "3 (decode_error:2 panic:1)".
func reasons(m map[string]int64) string {
	n := total(m)
	if n == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
		}
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, " "))
}

func appendReasons(lines []string, what string, m map[string]int64) []string {
	if total(m) == 0 {
		return lines
	}
	return append(lines, what+": "+reasons(m))
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// shortDuration keeps the two largest units: 45s, 3m12s, 5h3m, 2d4h.
func shortDuration(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
