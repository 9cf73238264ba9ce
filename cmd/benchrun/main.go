// Command benchrun is apmkit's load benchmark (make bench-load): it builds apmkit, ppload
// and ppfloor, then for each span transport and agent count runs ppload closed-loop on
// 127.0.0.1 against (a) ppfloor, a collector that only decodes (the floor), and (b) apmkit
// with the dataway output to a local sink that counts and checks what arrives. It measures
// throughput, the collector's CPU per million events and peak RSS, and completeness, and
// writes bench/RESULTS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are benchrun's flags.
type options struct {
	repo, out, work string
	duration        time.Duration
	drain, settle   time.Duration
	agents          []int
	transports      []string
	modes           []string
	events, ports   int
	inflight        int
	rate            float64
	seed            uint64
	pploadExtra     []string
	inputOptions    []string
	decodeOption    string
	quick, keep     bool
	note            string
	notes           string // -notes: a file of hand-written analysis for the report
	render          string
	profile         time.Duration // longest CPU profile of apmkit per run; 0 = none
	before          string        // results.json of an earlier run to compare with
	results         string        // where to copy this run's results.json ("-" = nowhere)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "benchrun:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	do := runBench
	if opts.render != "" {
		do = renderSaved
	}
	if err := do(ctx, opts, stderr); err != nil {
		fmt.Fprintln(stderr, "benchrun:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.repo, "repo", ".", "apmkit repository root (where ./cmd/apmkit is)")
	fs.StringVar(&o.out, "out", "bench/RESULTS.md", "report file")
	fs.StringVar(&o.work, "work", "", "folder for binaries, configs and logs (default: a new temp folder)")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "load time per run")
	fs.DurationVar(&o.drain, "drain", 60*time.Second, "full mode: longest wait after the load for the sink to receive every span")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "full mode: the sink counts as drained when nothing arrived for this long")
	agents := fs.String("agents", "8,500", "agent counts, comma separated")
	transports := fs.String("transports", "stream,batch", "span transports, comma separated")
	modes := fs.String("modes", "floor,full", "what to measure: floor (ppfloor), full (apmkit -> dataway sink), decode (apmkit with -decode-option)")
	fs.IntVar(&o.events, "events", 12, "events per span")
	fs.IntVar(&o.ports, "ports", 1, "collector ports: 1 (every service on one) or 3 (agent, stat, span)")
	fs.IntVar(&o.inflight, "inflight", 0, "batches in flight per agent (0 = auto: Java's 10, fewer when agents x 10 x 20 spans would exceed 4000)")
	fs.Float64Var(&o.rate, "rate", 0, "spans/s for ppload (0 = closed loop, as fast as the collector accepts)")
	fs.Uint64Var(&o.seed, "seed", 1, "ppload seed: every run sends the same traffic")
	extra := fs.String("ppload-flags", "", "more ppload flags, space separated (e.g. \"-batch-size 50 -linked-frac 0.5\")")
	inOpts := fs.String("input-options", "", "more [[inputs.pinpoint]] lines for apmkit, ';' separated (e.g. \"del_message = true\")")
	fs.StringVar(&o.decodeOption, "decode-option", "decode_only = true", "the [[inputs.pinpoint]] line that makes apmkit decode only (mode decode)")
	fs.BoolVar(&o.quick, "quick", false, "CI smoke: 10 s runs, 20 s drain limit, unless -duration/-drain are given")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, configs, /v1/stats of each run)")
	fs.StringVar(&o.render, "render", "", "write the report from a results.json of an earlier run (pass that run's flags too) instead of running")
	fs.DurationVar(&o.profile, "profile", 20*time.Second, "full and decode modes: take a CPU profile of apmkit this long (at most: it starts 2 s into the load and ends 2 s before its end) from /debug/pprof/profile; 0 = none")
	fs.StringVar(&o.before, "before", "", "results.json of an earlier run (e.g. bench/results.json): the report gets a before/after table")
	fs.StringVar(&o.results, "results", "", "copy this run's results.json here (default: results.json next to -out; \"-\" = do not copy)")
	fs.StringVar(&o.note, "note", "", "a sentence for the report (e.g. what build of the collector was measured)")
	fs.StringVar(&o.notes, "notes", "bench/NOTES.md", "a hand-written analysis included in the report after the targets, when the file exists")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["duration"] {
			o.duration = 10 * time.Second
		}
		if !set["drain"] {
			o.drain = 20 * time.Second
		}
	}
	o.pploadExtra = strings.Fields(*extra)
	for _, l := range strings.Split(*inOpts, ";") {
		if l = strings.TrimSpace(l); l != "" {
			o.inputOptions = append(o.inputOptions, l)
		}
	}
	o.transports, o.modes = splitList(*transports), splitList(*modes)
	var err error
	if o.agents, err = parseInts(*agents); err != nil {
		return nil, fmt.Errorf("-agents: %w", err)
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var errs []error
	for _, t := range o.transports {
		if t != "stream" && t != "batch" {
			errs = append(errs, fmt.Errorf("-transports: %q is not stream or batch", t))
		}
	}
	for _, m := range o.modes {
		if m != modeFloor && m != modeFull && m != modeDecode {
			errs = append(errs, fmt.Errorf("-modes: %q is not floor, full or decode", m))
		}
	}
	if o.ports != 1 && o.ports != 3 {
		errs = append(errs, fmt.Errorf("-ports: %d is not 1 or 3", o.ports))
	}
	if o.profile < 0 {
		errs = append(errs, errors.New("-profile must be >= 0"))
	}
	if o.duration <= 0 || o.drain <= 0 || o.settle <= 0 {
		errs = append(errs, errors.New("-duration, -drain and -settle must be > 0"))
	}
	if len(o.agents) == 0 || len(o.transports) == 0 || len(o.modes) == 0 {
		errs = append(errs, errors.New("-agents, -transports and -modes need at least one value"))
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// runBench builds the binaries, runs every scenario and writes the report.
func runBench(ctx context.Context, o *options, log io.Writer) error {
	work, cleanup, err := workDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	b := &bench{opts: o, work: work}
	buildCmds, err := b.build(ctx)
	if err != nil {
		return err
	}
	if b.sink, err = startSink(); err != nil {
		return err
	}
	defer b.sink.close()
	rep := newReport(o, buildCmds, work)
	if err := rep.loadBefore(); err != nil { // before the runs: a wrong path should not cost the bench
		return err
	}
	for _, sc := range scenarios(o) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(log, "benchrun: %s: running %s...\n", sc, o.duration)
		r := b.run(ctx, sc)
		fmt.Fprintln(log, "benchrun:", r.line())
		rep.add(r)
	}
	saved := filepath.Join(work, "results.json")
	if err := rep.save(saved); err != nil {
		return err
	}
	if err := rep.write(o.out); err != nil {
		return err
	}
	fmt.Fprintln(log, "benchrun: wrote", o.out, "from", saved)
	if dst := o.resultsPath(); dst != "" {
		if err := rep.save(dst); err != nil {
			return err
		}
		fmt.Fprintln(log, "benchrun: saved the results in", dst, "(compare a later run with them: -before", dst+")")
	}
	return nil
}

// renderSaved writes the report of a saved run, e.g. after a change to the report's form.
func renderSaved(_ context.Context, o *options, log io.Writer) error {
	rep, err := loadReport(o.render, o)
	if err != nil {
		return err
	}
	for _, r := range rep.results { // the stages again, while the work folder still holds the profile
		if p := r.Profile; p != nil && p.Path != "" {
			if _, err := os.Stat(p.Path); err == nil {
				if err := p.summarize(); err != nil {
					fmt.Fprintln(log, "benchrun:", r.scenario, err)
				}
			}
		}
	}
	if err := rep.loadBefore(); err != nil {
		return err
	}
	if err := rep.write(o.out); err != nil {
		return err
	}
	fmt.Fprintln(log, "benchrun: wrote", o.out)
	return nil
}

// resultsPath is where this run's results.json is copied: -results, or results.json
// next to the report; "" for -results -.
func (o *options) resultsPath() string {
	switch o.results {
	case "-":
		return ""
	case "":
		return filepath.Join(filepath.Dir(o.out), "results.json")
	}
	return o.results
}

// scenarios orders runs so each floor run is next to the full run it is compared with.
func scenarios(o *options) []scenario {
	var out []scenario
	for _, t := range o.transports {
		for _, n := range o.agents {
			for _, m := range o.modes {
				out = append(out, scenario{Mode: m, Transport: t, Agents: n})
			}
		}
	}
	return out
}

func workDir(o *options) (string, func(), error) {
	if o.work != "" {
		return o.work, func() {}, os.MkdirAll(o.work, 0o755)
	}
	dir, err := os.MkdirTemp("", "benchrun-")
	if err != nil {
		return "", nil, err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "benchrun: work folder", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// goBin is the go command: $GO (as the Makefile sets it), else go.
func (b *bench) goBin() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// build compiles the three binaries the way the Makefile builds apmkit, and returns the
// commands for the report.
func (b *bench) build(ctx context.Context) ([]string, error) {
	goBin := b.goBin()
	b.bins = map[string]string{}
	var cmds []string
	for _, name := range []string{"apmkit", "ppload", "ppfloor"} {
		out := filepath.Join(b.work, "bin", name)
		args := []string{"build", "-trimpath", "-o", out, "./cmd/" + name}
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir, cmd.Env = b.opts.repo, append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, msg)
		}
		b.bins[name] = out
		cmds = append(cmds, "CGO_ENABLED=0 "+commandLine(goBin, args))
	}
	slices.Sort(cmds)
	return cmds, nil
}
