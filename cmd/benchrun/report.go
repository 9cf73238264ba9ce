package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// Targets of the performance issue (#13) for the full path; the report compares with them,
// nothing asserts them.
const (
	targetFloorRatio         = 0.5 // full spans/s over the floor's, same transport and agents
	targetCPUPerMEvents      = 4.0 // with the message field
	targetCPUPerMEventsNoMsg = 3.0 // with del_message = true
	targetPeakRSSMB          = 150.0
	targetPeakRSSMBMany      = 300.0 // with more than manyAgents agents
	manyAgents               = 8
	targetCompleteness       = 1.0
	reportHeading            = "# apmkit load benchmark"
)

// report collects results and renders bench/RESULTS.md.
type report struct {
	opts       *options
	work       string   // benchrun's temp folder, written WORK in commands
	args       []string // the command line of the run that measured
	version    string   // git describe of the tree the binaries were built from
	render     []string // the -render command line, when the report was written again
	builds     []string
	results    []*result
	started    time.Time
	before     *saved // -before: an earlier run's results.json
	beforePath string
}

func newReport(o *options, builds []string, work string) *report {
	return &report{opts: o, builds: builds, work: work, started: time.Now(), args: os.Args, version: gitDescribe(o.repo)}
}

// readConf reads the .conf files of a folder; nil when there are none.
func readConf(dir string) map[string]string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	if len(files) == 0 {
		return nil
	}
	conf := map[string]string{}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			conf[filepath.Base(f)] = string(b)
		}
	}
	return conf
}

func (rp *report) add(r *result) { rp.results = append(rp.results, r) }

// saved is what results.json holds.
type saved struct {
	Version string
	Started time.Time
	Builds  []string
	Work    string
	Args    []string
	Results []*result
}

// save keeps the results so the report can be written again with -render.
func (rp *report) save(path string) error {
	b, err := json.MarshalIndent(saved{rp.version, rp.started, rp.builds, rp.work, rp.args, rp.results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// readSaved reads a results.json.
func readSaved(path string) (*saved, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sv saved
	if err := json.Unmarshal(b, &sv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &sv, nil
}

// loadBefore reads -before's results.json, if given.
func (rp *report) loadBefore() error {
	if rp.opts.before == "" {
		return nil
	}
	sv, err := readSaved(rp.opts.before)
	if err != nil {
		return fmt.Errorf("-before: %w", err)
	}
	rp.before, rp.beforePath = sv, rp.opts.before
	return nil
}

func loadReport(path string, o *options) (*report, error) {
	sv, err := readSaved(path)
	if err != nil {
		return nil, err
	}
	if sv.Version == "" { // saved before the version was kept
		sv.Version = gitDescribe(o.repo)
	}
	for _, r := range sv.Results {
		if r.Conf == nil && r.Mode != modeFloor { // saved before configs were kept
			r.Conf = readConf(filepath.Join(sv.Work, r.dirName(), "conf.d"))
		}
	}
	return &report{opts: o, builds: sv.Builds, work: sv.Work, started: sv.Started, results: sv.Results,
		args: sv.Args, version: sv.Version, render: os.Args}, nil
}

// line is a one-line progress summary.
func (r *result) line() string {
	if r.Err != "" {
		return fmt.Sprintf("%s: FAILED: %s", r.scenario, r.Err)
	}
	s := fmt.Sprintf("%s: %.0f spans/s, %.0f events/s, %.2f CPU-s/1M events, peak RSS %.0f MB, ppload errors %v",
		r.scenario, r.Load.SpansPerS, r.Load.EventsPerS, r.cpuPerMillionEvents(), r.PeakRSSMB, r.Load.Errors)
	if r.Sink != nil {
		s += fmt.Sprintf(", sink %d/%d entry spans (%.4f), %d dups", r.Sink.Entries, r.Load.Spans, r.completeness(), r.Sink.Dups)
	}
	return s
}

func (rp *report) write(path string) error {
	var b strings.Builder
	rp.header(&b)
	rp.pathNote(&b)
	rp.table(&b)
	rp.ratios(&b)
	rp.beforeAfter(&b)
	rp.targets(&b)
	rp.notes(&b)
	rp.profiles(&b)
	rp.commands(&b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (rp *report) header(b *strings.Builder) {
	cores, model, mem := machine()
	fmt.Fprintf(b, "%s\n\n", reportHeading)
	fmt.Fprintf(b, "Written by `cmd/benchrun` (`make bench-load`) on %s.\n\n", rp.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "## Machine\n\n")
	fmt.Fprintf(b, "- %d cores (nproc %d), %s, %.1f GiB memory\n", cores, runtime.NumCPU(), model, mem)
	fmt.Fprintf(b, "- %s, %s/%s; apmkit %s\n", goVersion(), runtime.GOOS, runtime.GOARCH, rp.version)
	fmt.Fprintf(b, "- everything on 127.0.0.1: ppload, the collector and the sink share the cores\n\n")
	fmt.Fprintf(b, "## Load\n\n")
	fmt.Fprintf(b, "ppload emulates Pinpoint agents over gRPC (half application ppload-web, half ppload-api): "+
		"%d events per span shaped like a Java web request, ppload's default mix (20%% of spans over 20 events as sync chunks, "+
		"10%% async, 5%% errors, 30%% of web transactions call ppload-api), a stat batch per agent, ", rp.opts.events)
	if rp.opts.rate > 0 {
		fmt.Fprintf(b, "at %.0f spans/s, ", rp.opts.rate)
	} else {
		fmt.Fprintf(b, "closed loop (as fast as the collector accepts: batches of 20 with %s in flight per agent, "+
			"or one SendSpan stream per agent), ", inflightText(rp.opts))
	}
	fmt.Fprintf(b, "%s per run, %d port(s), seed %d.\n\n", rp.opts.duration, rp.opts.ports, rp.opts.seed)
	fmt.Fprintf(b, "- **floor** = `ppfloor`: grpc-go + the generated types, decode and count only.\n")
	fmt.Fprintf(b, "- **full** = `apmkit run` with the `dataway` output posting to benchrun's sink, which gunzips, "+
		"parses the `span_type=entry` lines with point.Parse and checks (trace_id, span_id) are never repeated.\n")
	fmt.Fprintf(b, "- spans/s and events/s: what the collector acknowledged per second of load (ppload's count). "+
		"CPU: utime+stime of the collector process only (/proc/PID/stat) from ppload's start until the sink drained, "+
		"per million events sent. Peak RSS: VmHWM. Completeness: entry spans at the sink / spans sent, after the drain wait "+
		"(until every span arrived, nothing arrived for %s, or %s passed). Delivered spans/s: entry spans at the sink "+
		"per second from ppload's start to the last one's arrival (the output side's pace).\n", rp.opts.settle, rp.opts.drain)
	if rp.opts.note != "" {
		fmt.Fprintf(b, "\nNote: %s\n", rp.opts.note)
	}
	b.WriteString("\n")
}

// pathNote says plainly when the full path did not deliver spans, so nobody reads the
// full-path CPU figures as the cost of converting spans.
func (rp *report) pathNote(b *strings.Builder) {
	rp.contentionNote(b)
	var sent, got int64
	for _, r := range rp.results {
		if r.Sink != nil && r.Err == "" {
			sent += r.Load.Spans
			got += r.Sink.Entries
		}
	}
	if sent == 0 {
		return
	}
	switch {
	case got == 0:
		fmt.Fprintf(b, "**Path measured: the full path delivered no span points** (%d spans sent, 0 entry spans at the sink): "+
			"this apmkit build does not convert spans yet (the span assembler is not wired into the input), so the full-path "+
			"figures are gRPC + decode + counting + stats conversion + the uploader, not span conversion. "+
			"Completeness is reported against the span targets anyway.\n\n", sent)
	case got < sent:
		fmt.Fprintf(b, "**Path measured: the full path, with losses** (%d of %d spans arrived).\n\n", got, sent)
	default:
		fmt.Fprintf(b, "**Path measured: the full path** (assembler, conversion, pipeline, uploader, dataway).\n\n")
	}
}

func (rp *report) table(b *strings.Builder) {
	b.WriteString("## Throughput and cost\n\n")
	b.WriteString("| mode | transport | agents | spans sent | spans/s | events/s | collector CPU-s | CPU-s / 1M events | peak RSS MB | ppload CPU-s | sink CPU-s | other processes CPU-s | collector counted = sent | errors, drops, spills |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rp.results {
		if r.Err != "" {
			fmt.Fprintf(b, "| %s | %s | %d | failed: %s |||||||||||\n", r.Mode, r.Transport, r.Agents, oneLine(r.Err))
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %d | %d | %.0f | %.0f | %.1f | %.2f | %.0f | %.1f | %.1f | %.1f | %s | %s |\n",
			r.Mode, r.Transport, r.Agents, r.Load.Spans, r.Load.SpansPerS, r.Load.EventsPerS, r.CollectorCPU,
			r.cpuPerMillionEvents(), r.PeakRSSMB, r.LoadCPU, r.SinkCPU, r.OtherCPU, countsMatch(r), errorsText(r))
	}
	b.WriteString("\n")
	rp.deliveryTable(b)
}

// deliveryTable shows what reached the sink in the full-path runs.
func (rp *report) deliveryTable(b *strings.Builder) {
	b.WriteString("## Delivery (full path)\n\n")
	b.WriteString("| transport | agents | spans sent | spans the collector counted | entry spans at sink | completeness (sink / sent) | sink / counted | duplicate entries | traces at sink | transactions sent | delivered spans/s | drain s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rp.results {
		if r.Err != "" || r.Sink == nil {
			continue
		}
		counted := r.Collector["PSpan"]
		perCounted := 0.0
		if counted > 0 {
			perCounted = float64(r.Sink.Entries) / float64(counted)
		}
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %.4f | %.4f | %d | %d | %d | %.0f | %.1f |\n",
			r.Transport, r.Agents, r.Load.Spans, counted, r.Sink.Entries, r.completeness(), perCounted,
			r.Sink.Dups, r.Sink.Traces, r.Load.Transactions, r.DeliveredPS, r.DrainS)
	}
	b.WriteString("\nSpans in batches that timed out at ppload (DeadlineExceeded) are not counted as sent, but the collector may " +
		"still have taken them: that is how completeness can pass 1. Traces at sink should equal transactions sent " +
		"(a linked transaction is one trace with two entry spans).\n\n")
}

// countsMatch compares the collector's span counters with what ppload sent.
func countsMatch(r *result) string {
	for _, k := range []string{"PSpan", "PSpanChunk", "PSpanMessage"} {
		if r.Collector[k] != r.Load.Messages[k] {
			return fmt.Sprintf("no: %s %d vs %d", k, r.Collector[k], r.Load.Messages[k])
		}
	}
	if len(r.Rejected) > 0 {
		return fmt.Sprintf("yes, rejected %v", r.Rejected)
	}
	return "yes"
}

func errorsText(r *result) string {
	parts := []string{}
	for k, v := range r.Load.Errors {
		parts = append(parts, fmt.Sprintf("%s %d (first: %s)", k, v, oneLine(r.Load.FirstErrors[k])))
	}
	for k, v := range r.Dropped {
		parts = append(parts, fmt.Sprintf("dropped %s %d", k, v))
	}
	if r.Load.Lost > 0 {
		parts = append(parts, fmt.Sprintf("span messages in failed calls %d", r.Load.Lost))
	}
	if r.Spilled > 0 {
		parts = append(parts, fmt.Sprintf("batches spilled to disk %d", r.Spilled))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// contentionNote warns when other processes took a noticeable share of the machine
// during a run: the figures of that run are then lower than the machine can do.
func (rp *report) contentionNote(b *strings.Builder) {
	var runs []string
	for _, r := range rp.results {
		if r.Err == "" && r.WallS > 0 && r.OtherCPU > 0.05*r.WallS*float64(runtime.NumCPU()) {
			runs = append(runs, fmt.Sprintf("%s (%.0f%% of the machine)", r.scenario, 100*r.OtherCPU/(r.WallS*float64(runtime.NumCPU()))))
		}
	}
	if len(runs) > 0 {
		fmt.Fprintf(b, "**Other processes used more than 5%% of the machine during**: %s. Those runs understate what the machine can do.\n\n",
			strings.Join(runs, ", "))
	}
}

// ratios compares full with floor per transport and agent count.
func (rp *report) ratios(b *strings.Builder) {
	type key struct {
		t string
		n int
	}
	byKey := map[key]map[string]*result{}
	var keys []key
	for _, r := range rp.results {
		k := key{r.Transport, r.Agents}
		if byKey[k] == nil {
			byKey[k] = map[string]*result{}
			keys = append(keys, k)
		}
		if r.Err == "" {
			byKey[k][r.Mode] = r
		}
	}
	b.WriteString("## Full path vs floor\n\n| transport | agents | floor spans/s | full spans/s | full / floor | floor CPU-s / 1M events | full CPU-s / 1M events |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range keys {
		fl, fu := byKey[k][modeFloor], byKey[k][modeFull]
		if fl == nil || fu == nil {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f |\n", k.t, k.n, fl.Load.SpansPerS, fu.Load.SpansPerS,
			fu.Load.SpansPerS/fl.Load.SpansPerS, fl.cpuPerMillionEvents(), fu.cpuPerMillionEvents())
	}
	b.WriteString("\n")
}

// targets reports the full path against the performance issue's targets (reported,
// never asserted).
func (rp *report) targets(b *strings.Builder) {
	var full []*result
	floor := map[string]*result{}
	for _, r := range rp.results {
		switch {
		case r.Err != "":
		case r.Mode == modeFull:
			full = append(full, r)
		case r.Mode == modeFloor:
			floor[fmt.Sprint(r.Transport, r.Agents)] = r
		}
	}
	if len(full) == 0 {
		return
	}
	cpuTarget := targetCPUPerMEvents
	if slices.Contains(rp.opts.inputOptions, "del_message = true") {
		cpuTarget = targetCPUPerMEventsNoMsg
	}
	fmt.Fprintf(b, "## Targets (full path)\n\n| target |")
	for _, r := range full {
		fmt.Fprintf(b, " %s, %d agents |", r.Transport, r.Agents)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(full)) + "\n")
	row := func(name string, cell func(r *result) string) {
		fmt.Fprintf(b, "| %s |", name)
		for _, r := range full {
			fmt.Fprintf(b, " %s |", cell(r))
		}
		b.WriteString("\n")
	}
	row(fmt.Sprintf("full / floor >= %.1f", targetFloorRatio), func(r *result) string {
		fl := floor[fmt.Sprint(r.Transport, r.Agents)]
		if fl == nil || fl.Load.SpansPerS == 0 {
			return "no floor run"
		}
		ratio := r.Load.SpansPerS / fl.Load.SpansPerS
		return verdict(ratio >= targetFloorRatio, "%.2f", ratio)
	})
	row(fmt.Sprintf("<= %.0f CPU-s per 1M events", cpuTarget), func(r *result) string {
		return verdict(r.cpuPerMillionEvents() <= cpuTarget, "%.2f", r.cpuPerMillionEvents())
	})
	row(fmt.Sprintf("peak RSS <= %.0f MB (%.0f MB over %d agents)", targetPeakRSSMB, targetPeakRSSMBMany, manyAgents), func(r *result) string {
		limit := targetPeakRSSMB
		if r.Agents > manyAgents {
			limit = targetPeakRSSMBMany
		}
		return verdict(r.PeakRSSMB <= limit, "%.0f MB", r.PeakRSSMB)
	})
	row("completeness = 1.0", func(r *result) string {
		return verdict(r.completeness() == targetCompleteness && r.Sink.Dups == 0, "%.4f", r.completeness())
	})
	b.WriteString("\n")
}

// notes appends the hand-written analysis (-notes, default bench/NOTES.md) when it exists:
// what the figures mean and what would close the gaps, kept beside the generated report.
func (rp *report) notes(b *strings.Builder) {
	if rp.opts.notes == "" {
		return
	}
	text, err := os.ReadFile(rp.opts.notes)
	if err != nil {
		return
	}
	fmt.Fprintf(b, "%s\n", strings.TrimSpace(string(text)))
	b.WriteString("\n")
}

// inflightText says how many batches each agent had in flight.
func inflightText(o *options) string {
	if o.inflight > 0 {
		return fmt.Sprint(o.inflight)
	}
	var parts []string
	for _, n := range o.agents {
		parts = append(parts, fmt.Sprintf("%d with %d agents", inflightFor(0, n), n))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (at most %d spans in flight in all, so the closed loop measures throughput rather than Java's 6 s deadline)", maxSpansInFlight)
}

func verdict(met bool, format string, v float64) string {
	if met {
		return fmt.Sprintf(format+" (met)", v)
	}
	return fmt.Sprintf(format+" (**missed**)", v)
}

func (rp *report) commands(b *strings.Builder) {
	b.WriteString("## Commands\n\nThe measuring run (what `make bench-load BENCHFLAGS=...` runs):\n\n```sh\n" +
		rp.shorten(commandLine("go run ./cmd/benchrun", rp.args[min(1, len(rp.args)):])) + "\n```\n\n")
	if len(rp.render) > 1 {
		b.WriteString("This report was written again from that run's results.json (the note corrected) with:\n\n```sh\n" +
			commandLine("go run ./cmd/benchrun", rp.render[1:]) + "\n```\n\n")
	}
	b.WriteString("Build:\n\n```sh\n")
	for _, c := range rp.builds {
		b.WriteString(rp.shorten(c) + "\n")
	}
	b.WriteString("```\n\nRuns (BIN and WORK are benchrun's temp folders; apmkit's conf.d holds apmkit.conf with the dataway output and pinpoint.conf with the input's addresses):\n\n```sh\n")
	for _, r := range rp.results {
		fmt.Fprintf(b, "# %s\n", r.scenario)
		for _, c := range r.Commands {
			b.WriteString(rp.shorten(c) + "\n")
		}
	}
	b.WriteString("```\n")
	rp.configs(b)
}

// configs shows apmkit's config files of the first full-path run (later runs differ only
// in ports and folders).
func (rp *report) configs(b *strings.Builder) {
	for _, r := range rp.results {
		if r.Mode == modeFloor || len(r.Conf) == 0 {
			continue
		}
		fmt.Fprintf(b, "\napmkit's config files of %s (other runs differ in ports and folders):\n", r.scenario)
		names := make([]string, 0, len(r.Conf))
		for n := range r.Conf {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(b, "\n`conf.d/%s`:\n\n```toml\n%s```\n", n, rp.shorten(r.Conf[n]))
		}
		return
	}
}

// shorten writes the temp folders in a command as BIN and WORK.
func (rp *report) shorten(c string) string {
	if rp.work == "" {
		return c
	}
	c = strings.ReplaceAll(c, filepath.Join(rp.work, "bin")+"/", "BIN/")
	return strings.ReplaceAll(c, rp.work+"/", "WORK/")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "/")
}

func goVersion() string { return runtime.Version() }

func gitDescribe(repo string) string {
	out, err := exec.Command("git", "-C", repo, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "(no git)"
	}
	return strings.TrimSpace(string(out))
}

// floorRatio is r's spans/s over the floor run's of the same transport and agents in
// results; ok is false when there is no such floor run (or r is one).
func floorRatio(results []*result, r *result) (float64, bool) {
	if r.Mode == modeFloor || r.Err != "" {
		return 0, false
	}
	for _, f := range results {
		if f.Mode == modeFloor && f.Err == "" && f.Transport == r.Transport && f.Agents == r.Agents && f.Load.SpansPerS > 0 {
			return r.Load.SpansPerS / f.Load.SpansPerS, true
		}
	}
	return 0, false
}

// beforeAfter compares this run with -before's, per (mode, transport, agents) in both.
func (rp *report) beforeAfter(b *strings.Builder) {
	if rp.before == nil {
		return
	}
	bf := rp.before
	fmt.Fprintf(b, "## Before / after\n\n")
	fmt.Fprintf(b, "Before: `%s`, apmkit %s, measured %s", rp.beforePath, bf.Version, bf.Started.UTC().Format("2006-01-02 15:04 MST"))
	if len(bf.Args) > 0 {
		fmt.Fprintf(b, " with `%s`", commandLine("go run ./cmd/benchrun", bf.Args[min(1, len(bf.Args)):]))
	}
	fmt.Fprintf(b, ". After: the run of this report, apmkit %s. Change = after / before - 1. The machine is shared: differences of a few %% are noise.\n\n", rp.version)
	type key struct {
		mode, transport string
		agents          int
	}
	old := map[key]*result{}
	for _, r := range bf.Results {
		if r.Err == "" {
			old[key{r.Mode, r.Transport, r.Agents}] = r
		}
	}
	var rows []string
	for _, r := range rp.results {
		o := old[key{r.Mode, r.Transport, r.Agents}]
		if r.Err != "" || o == nil {
			continue
		}
		ratio := func(results []*result, r *result) string {
			if v, ok := floorRatio(results, r); ok {
				return fmt.Sprintf("%.2f", v)
			}
			return "–"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %d | %.0f | %.0f | %s | %.2f | %.2f | %s | %.0f | %.0f | %s | %s |\n",
			r.Mode, r.Transport, r.Agents,
			o.Load.SpansPerS, r.Load.SpansPerS, change(o.Load.SpansPerS, r.Load.SpansPerS),
			o.cpuPerMillionEvents(), r.cpuPerMillionEvents(), change(o.cpuPerMillionEvents(), r.cpuPerMillionEvents()),
			o.PeakRSSMB, r.PeakRSSMB, ratio(bf.Results, o), ratio(rp.results, r)))
	}
	if len(rows) == 0 {
		b.WriteString("No (mode, transport, agents) was measured in both runs.\n\n")
		return
	}
	b.WriteString("| mode | transport | agents | spans/s before | spans/s after | change | CPU-s / 1M events before | CPU-s / 1M events after | change | peak RSS MB before | peak RSS MB after | spans/s vs floor before | spans/s vs floor after |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		b.WriteString(row)
	}
	b.WriteString("\n")
}

// change is after/before - 1 as a signed percentage.
func change(before, after float64) string {
	if before == 0 {
		return "–"
	}
	c := math.Round(100 * (after/before - 1))
	if c == 0 {
		return "0%"
	}
	return fmt.Sprintf("%+.0f%%", c)
}

// profiles is "Where the CPU goes": the stage summary of every run with a CPU profile and
// pprof's top functions by flat and cumulative time.
func (rp *report) profiles(b *strings.Builder) {
	var runs []*result
	for _, r := range rp.results {
		if r.Profile != nil {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return
	}
	b.WriteString("## Where the CPU goes (full path)\n\n")
	fmt.Fprintf(b, "benchrun started apmkit with `pprof = true` under `[http_api]` and fetched `GET /debug/pprof/profile?seconds=S` "+
		"beside the load, from %s into it and ending at least %s before its end (S at most %s): the profile covers steady load, "+
		"not the drain, and its sampling (100 Hz) costs a little CPU that the figures above include. The profiles are "+
		"`cpu.pprof` in each run's folder of the work folder (kept with `-keep` or `-work`).\n\n",
		profileDelay, profileTail, rp.opts.profile)
	var staged []*result
	for _, r := range runs {
		if len(r.Profile.Stages) > 0 {
			staged = append(staged, r)
		}
	}
	if len(staged) > 0 {
		b.WriteString("Per stage, in % of the CPU in the profile: **share** / cum / malloc. Share: each sample counts once, for the stage of " +
			"its innermost frame in a stage's package (frames of other packages, e.g. the standard library and klauspost/compress, count " +
			"for their caller: gzip and net/http under the uploader are the uploader); GC background work by its goroutine. Shares add up to " +
			"100. Cum: samples with a frame of the stage anywhere on the stack (stages overlap: conversion calls span encoding). " +
			"Malloc: the part of the share inside runtime.mallocgc (allocation, with the GC assists it makes).\n\n")
		b.WriteString("| stage |")
		for _, r := range staged {
			fmt.Fprintf(b, " %s |", r.scenario)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(staged)) + "\n")
		b.WriteString("| CPU in the profile |")
		for _, r := range staged {
			p := r.Profile
			fmt.Fprintf(b, " %.1f CPU-s in %.0f s (%.2f cores) |", p.SampledS, p.WallS, p.SampledS/max(p.WallS, 1e-9))
		}
		b.WriteString("\n")
		for _, st := range stageOrder {
			cells, found := "", false
			for _, r := range staged {
				cell := "–"
				for _, sh := range r.Profile.Stages {
					if sh.Stage == st {
						cell, found = fmt.Sprintf("**%.1f** / %.1f / %.1f", sh.Pct, sh.CumPct, sh.Malloc), true
					}
				}
				cells += " " + cell + " |"
			}
			if found {
				fmt.Fprintf(b, "| %s |%s\n", st, cells)
			}
		}
		b.WriteString("\n")
	}
	for _, r := range runs {
		p := r.Profile
		fmt.Fprintf(b, "### %s\n\n", r.scenario)
		if p.Err != "" {
			fmt.Fprintf(b, "%s\n\n", oneLine(p.Err))
		}
		if p.Top != "" {
			fmt.Fprintf(b, "Top %d functions by flat time (`go tool pprof -top -nodecount=%d`):\n\n```\n%s```\n\n", profileTopN, profileTopN, p.Top)
		}
		if p.TopCum != "" {
			fmt.Fprintf(b, "Top %d by cumulative time (`-top -cum`):\n\n```\n%s```\n\n", profileTopN, p.TopCum)
		}
	}
}
