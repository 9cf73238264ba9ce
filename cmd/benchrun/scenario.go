package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Modes: what receives ppload's traffic.
const (
	modeFloor  = "floor"  // ppfloor: gRPC + decode only
	modeFull   = "full"   // apmkit, dataway output to the sink
	modeDecode = "decode" // apmkit with the decode-only option (once the input has it)
)

// scenario is one measured run.
type scenario struct {
	Mode, Transport string
	Agents          int
}

func (s scenario) String() string {
	return fmt.Sprintf("%s/%s/%d agents", s.Mode, s.Transport, s.Agents)
}

// dirName is the scenario's folder in the work folder, e.g. full-batch-8agents.
func (s scenario) dirName() string {
	return strings.NewReplacer("/", "-", " ", "").Replace(s.String())
}

// pploadSummary is the part of ppload's JSON line the report uses.
type pploadSummary struct {
	Spans        int64             `json:"spans"`
	ChildSpans   int64             `json:"child_spans"`
	ErrorSpans   int64             `json:"error_spans"`
	Chunks       int64             `json:"chunks"`
	AsyncChunks  int64             `json:"async_chunks"`
	Events       int64             `json:"events"`
	Transactions int64             `json:"transactions"`
	Batches      int64             `json:"batches"`
	Rejected     int64             `json:"rejected"`
	Lost         int64             `json:"lost_span_messages"`
	Errors       map[string]int64  `json:"errors"`
	FirstErrors  map[string]string `json:"first_errors"`
	Messages     map[string]int64  `json:"messages"`
	DurationS    float64           `json:"duration_s"`
	SpansPerS    float64           `json:"spans_per_s"`
	EventsPerS   float64           `json:"events_per_s"`
}

// result is what one scenario measured.
type result struct {
	scenario
	Load         pploadSummary
	CollectorCPU float64 // CPU-seconds of the collector process from ppload's start to drained
	PeakRSSMB    float64
	LoadCPU      float64 // ppload's own CPU-seconds (it shares the cores)
	SinkCPU      float64 // benchrun's own CPU-seconds: the sink, which shares the cores too
	OtherCPU     float64 // CPU-seconds of every other process on the machine meanwhile
	Spilled      int64   // apmkit io: batches the outputs spilled to disk
	Collector    map[string]int64
	Rejected     map[string]int64
	Dropped      map[string]int64 // apmkit io: points dropped before the outputs
	Sink         *sinkCounts
	DeliveredPS  float64 // entry spans at the sink per second, from ppload's start to the last one
	DrainS       float64 // from ppload's end until the sink settled
	WallS        float64 // from ppload's start until drained
	Commands     []string
	Conf         map[string]string // apmkit's config files by name
	Profile      *cpuProfile       `json:",omitempty"` // apmkit's CPU profile during the load
	Err          string
}

// cpuPerMillionEvents is the collector's CPU-seconds per million events sent.
func (r *result) cpuPerMillionEvents() float64 {
	if r.Load.Events == 0 {
		return 0
	}
	return r.CollectorCPU / float64(r.Load.Events) * 1e6
}

// completeness is entry spans at the sink per span sent (full mode only).
func (r *result) completeness() float64 {
	if r.Sink == nil || r.Load.Spans == 0 {
		return 0
	}
	return float64(r.Sink.Entries) / float64(r.Load.Spans)
}

// bench holds what every scenario shares.
type bench struct {
	opts *options
	bins map[string]string // name -> path
	sink *sink
	work string
}

// run measures one scenario; a failure is recorded in the result, not fatal to the bench.
func (b *bench) run(ctx context.Context, sc scenario) *result {
	r := &result{scenario: sc}
	dir := filepath.Join(b.work, sc.dirName())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Err = err.Error()
		return r
	}
	if err := b.measure(ctx, sc, dir, r); err != nil {
		r.Err = err.Error()
	}
	// After the collector stopped: go tool pprof's CPU is not in the figures.
	b.analyzeProfile(ctx, r)
	return r
}

func (b *bench) measure(ctx context.Context, sc scenario, dir string, r *result) error {
	addrs, err := ports(b.opts.ports)
	if err != nil {
		return err
	}
	b.sink.reset()
	srv, api, err := b.startCollector(ctx, sc, dir, addrs, r)
	if err != nil {
		return err
	}
	defer srv.stop(15 * time.Second) //nolint:errcheck // the normal stop below reports errors
	m, err := startMeter(srv.cmd.Process.Pid)
	if err != nil {
		return err
	}
	var prof *profileFetch
	if api != "" && b.opts.profile > 0 {
		prof = b.startProfile(ctx, api, dir)
	}
	loadErr := b.runLoad(ctx, sc, dir, addrs, r)
	if prof != nil {
		r.Profile = prof.wait(loadErr != nil)
		if r.Profile.Seconds > 0 {
			r.Commands = append(r.Commands, fmt.Sprintf("curl -s -o %s 'http://%s/debug/pprof/profile?seconds=%d'  # %s into the load, beside ppload",
				filepath.Join(dir, "cpu.pprof"), api, r.Profile.Seconds, profileDelay))
		}
	}
	if loadErr != nil {
		return loadErr
	}
	if sc.Mode != modeFloor {
		b.collectSink(m.start, r)
	}
	if err := m.read(r); err != nil {
		return err
	}
	if api != "" {
		if err := readAPIStats(ctx, api, dir, r); err != nil {
			return err
		}
	}
	if err := srv.stop(15 * time.Second); err != nil {
		return err
	}
	if sc.Mode == modeFloor {
		return parseFloorCounts(srv.stdout.Bytes(), r)
	}
	return nil
}

// collectSink waits for the sink to drain and takes its counts.
func (b *bench) collectSink(start time.Time, r *result) {
	r.DrainS = b.drain(r.Load.Spans).Seconds()
	r.Sink = ptr(b.sink.counts())
	if d := r.Sink.LastEntry.Sub(start).Seconds(); d > 0 {
		r.DeliveredPS = float64(r.Sink.Entries) / d
	}
}

// meter measures the collector process (and benchrun itself, i.e. the sink) over a run.
type meter struct {
	pid                int
	cpu0, self0, busy0 float64
	start              time.Time
}

func startMeter(pid int) (*meter, error) {
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	self0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return nil, err
	}
	busy0, err := busyCPUSeconds()
	if err != nil {
		return nil, err
	}
	return &meter{pid: pid, cpu0: cpu0, self0: self0, busy0: busy0, start: time.Now()}, nil
}

// read sets the CPU, peak RSS and wall time of the run so far.
func (m *meter) read(r *result) error {
	r.WallS = time.Since(m.start).Seconds()
	cpu1, err := cpuSeconds(m.pid)
	if err != nil {
		return err
	}
	self1, err := cpuSeconds(os.Getpid())
	if err != nil {
		return err
	}
	busy1, err := busyCPUSeconds()
	if err != nil {
		return err
	}
	r.CollectorCPU, r.SinkCPU = cpu1-m.cpu0, self1-m.self0
	// ppload ran inside the window; its CPU comes from its rusage after it exited.
	r.OtherCPU = max(0, busy1-m.busy0-r.CollectorCPU-r.SinkCPU-r.LoadCPU)
	r.PeakRSSMB, err = peakRSSMB(m.pid)
	return err
}

func ptr[T any](v T) *T { return &v }

// ports picks 1 or 3 free loopback addresses: agent, then stat and span.
func ports(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	return addrs, nil
}

// startCollector starts ppfloor or apmkit on addrs and waits until it listens; it returns
// apmkit's HTTP API address ("" for ppfloor).
func (b *bench) startCollector(ctx context.Context, sc scenario, dir string, addrs []string, r *result) (*server, string, error) {
	var args []string
	var bin, api string
	if sc.Mode == modeFloor {
		bin, args = b.bins["ppfloor"], []string{"-addr", addrs[0]}
		if len(addrs) == 3 {
			args = append(args, "-stat-addr", addrs[1], "-span-addr", addrs[2])
		}
	} else {
		var err error
		if api, err = freePort(); err != nil {
			return nil, "", err
		}
		if err := b.writeConf(dir, sc, addrs, api, r); err != nil {
			return nil, "", err
		}
		bin, args = b.bins["apmkit"], []string{"run", "--conf-dir", filepath.Join(dir, "conf.d"), "--data-dir", filepath.Join(dir, "data")}
	}
	r.Commands = append(r.Commands, commandLine(bin, args))
	srv, err := startServer(bin, args, nil, filepath.Join(dir, sc.Mode+".log"))
	if err != nil {
		return nil, "", err
	}
	for _, a := range append(addrs, api) {
		if a == "" {
			continue
		}
		if err := waitListening(ctx, a, srv.exited, 30*time.Second); err != nil {
			_ = srv.stop(5 * time.Second)
			return nil, "", fmt.Errorf("%s: %w (log: %s)", sc.Mode, err, filepath.Join(dir, sc.Mode+".log"))
		}
	}
	return srv, api, nil
}

// writeConf writes apmkit's main config (dataway output to the sink, the HTTP API on api
// with /debug/pprof/ when profiling, warnings only) and the Pinpoint input's.
func (b *bench) writeConf(dir string, sc scenario, addrs []string, api string, r *result) error {
	confDir := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	pprofLine := ""
	if b.opts.profile > 0 {
		pprofLine = "  pprof = true\n"
	}
	main := fmt.Sprintf(`data_dir = %q
[http_api]
  listen = %q
%s[log]
  level = "warn"
[io]
  # The DataWay path alone, comparable with earlier runs; the explorer's store has its own
  # benchmark (go test -bench Write ./tracestore).
  explorer = false
[[io.outputs]]
  type = "dataway"
  url = %q
`, filepath.Join(dir, "data"), api, pprofLine, b.sink.url+"?token=tkn_bench")
	in := fmt.Sprintf("[[inputs.pinpoint]]\n  address = %q\n", addrs[0])
	stat, span := "", ""
	if len(addrs) == 3 {
		stat, span = addrs[1], addrs[2]
	}
	in += fmt.Sprintf("  stat_address = %q\n  span_address = %q\n", stat, span)
	if sc.Mode == modeDecode {
		in += "  " + b.opts.decodeOption + "\n"
	}
	for _, extra := range b.opts.inputOptions {
		in += "  " + extra + "\n"
	}
	r.Conf = map[string]string{"apmkit.conf": main, "pinpoint.conf": in}
	for name, text := range r.Conf {
		if err := os.WriteFile(filepath.Join(confDir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runLoad runs ppload against addrs and parses its summary line.
func (b *bench) runLoad(ctx context.Context, sc scenario, dir string, addrs []string, r *result) error {
	args := b.pploadArgs(sc, addrs)
	r.Commands = append(r.Commands, commandLine(b.bins["ppload"], args))
	cmd := exec.CommandContext(ctx, b.bins["ppload"], args...)
	var out bytes.Buffer
	errLog, err := os.Create(filepath.Join(dir, "ppload.log"))
	if err != nil {
		return err
	}
	defer errLog.Close()
	cmd.Stdout, cmd.Stderr = &out, errLog
	runErr := cmd.Run()
	r.LoadCPU = rusageCPU(cmd.ProcessState)
	if runErr != nil {
		return fmt.Errorf("ppload: %w (log: %s)", runErr, errLog.Name())
	}
	return parseLastJSON(out.Bytes(), &r.Load)
}

func (b *bench) pploadArgs(sc scenario, addrs []string) []string {
	args := []string{
		"-addr", addrs[0], "-agents", strconv.Itoa(sc.Agents), "-transport", sc.Transport,
		"-events", strconv.Itoa(b.opts.events), "-duration", b.opts.duration.String(),
		"-seed", strconv.FormatUint(b.opts.seed, 10), "-stats",
	}
	if len(addrs) == 3 {
		args = append(args, "-stat-addr", addrs[1], "-span-addr", addrs[2])
	}
	if b.opts.rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(b.opts.rate, 'f', -1, 64))
	}
	if sc.Transport == "batch" {
		args = append(args, "-inflight", strconv.Itoa(inflightFor(b.opts.inflight, sc.Agents)))
	}
	return append(args, b.opts.pploadExtra...)
}

// maxSpansInFlight bounds the closed loop over all agents. Java's 10 batches of 20 in
// flight per agent is 100,000 spans with 500 agents: more than any collector here answers
// within Java's 6 s deadline, so the run would measure timeouts instead of throughput.
const maxSpansInFlight = 4000

// inflightFor is the -inflight given to ppload: the flag's value, or automatically Java's
// 10 when agents x 10 x 20 spans stay within maxSpansInFlight, else fewer (at least 1).
func inflightFor(flagValue, agents int) int {
	if flagValue > 0 {
		return flagValue
	}
	return max(1, min(10, maxSpansInFlight/(agents*20)))
}

// drain waits until the sink holds an entry span per span sent, or nothing new arrived
// for the settle time (a path that converts fewer spans never reaches the count), or the
// drain limit passed. It returns how long it waited.
func (b *bench) drain(want int64) time.Duration {
	start := time.Now()
	last, lastChange := b.sink.counts(), time.Now()
	for time.Since(start) < b.opts.drain {
		time.Sleep(100 * time.Millisecond)
		now := b.sink.counts()
		if now.Entries >= want {
			break
		}
		if now.Requests != last.Requests {
			last, lastChange = now, time.Now()
		} else if time.Since(lastChange) >= b.opts.settle {
			break
		}
	}
	return time.Since(start)
}

// parseLastJSON decodes the last non-empty line of out.
func parseLastJSON(out []byte, v any) error {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], v); err != nil {
		return fmt.Errorf("summary line %q: %w", lines[len(lines)-1], err)
	}
	return nil
}

func parseFloorCounts(out []byte, r *result) error {
	var c struct {
		Messages map[string]int64 `json:"messages"`
	}
	if err := parseLastJSON(out, &c); err != nil {
		return fmt.Errorf("ppfloor: %w", err)
	}
	r.Collector = c.Messages
	return nil
}

// readAPIStats keeps apmkit's /v1/stats in the run folder and takes the input's counters
// and the uploader's drops from it.
func readAPIStats(ctx context.Context, api, dir string, r *result) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/v1/stats", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("apmkit /v1/stats: %w", err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		return err
	}
	_ = os.WriteFile(filepath.Join(dir, "stats.json"), buf.Bytes(), 0o644)
	return parseAPIStats(buf.Bytes(), r)
}

func parseAPIStats(b []byte, r *result) error {
	var st struct {
		Inputs []struct {
			Stats struct {
				Messages map[string]int64 `json:"messages"`
				Rejected map[string]int64 `json:"rejected"`
			} `json:"stats"`
		} `json:"inputs"`
		IO struct {
			Categories []struct {
				Category string           `json:"category"`
				Dropped  map[string]int64 `json:"dropped"`
			} `json:"categories"`
			Outputs []struct {
				Spilled int64 `json:"spilled_batches_total"`
			} `json:"outputs"`
		} `json:"io"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("apmkit /v1/stats: %w", err)
	}
	if len(st.Inputs) > 0 {
		r.Collector, r.Rejected = st.Inputs[0].Stats.Messages, st.Inputs[0].Stats.Rejected
	}
	r.Dropped = map[string]int64{}
	for _, o := range st.IO.Outputs {
		r.Spilled += o.Spilled
	}
	for _, c := range st.IO.Categories {
		for reason, n := range c.Dropped {
			r.Dropped[c.Category+"/"+reason] += n
		}
	}
	return nil
}

// commandLine is a shell-pastable form of a command for the report.
func commandLine(bin string, args []string) string {
	parts := []string{bin}
	for _, a := range args {
		if strings.ContainsAny(a, " \"'$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
