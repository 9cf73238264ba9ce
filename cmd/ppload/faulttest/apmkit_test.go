package faulttest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ioConf is the uploader configuration of a test: small queues, so that what is in
// memory (and what kill -9 may lose) is a known, small amount, and short retries, so
// that an output that comes back is noticed within a second or two.
type ioConf struct {
	QueuePoints     int // [io] queue_max_points (uploaders that bound memory in points)
	QueueMB         int // [io] queue_max_mb (uploaders that bound memory in bytes)
	BatchPoints     int // [io] batch_max_points
	FlushInterval   time.Duration
	StopTimeout     time.Duration
	QueueBatches    int // [[io.outputs]] queue_max_batches
	RetryInitial    time.Duration
	RetryMax        time.Duration
	RetryMaxElapsed time.Duration
	CapacityMB      int
	Timeout         time.Duration // the output's per-request timeout
	// Outputs, when set, are [[io.outputs]] tables used instead of the dataway output to
	// the sink.
	Outputs string
	// Input is appended to the [[inputs.pinpoint]] table: options, then its sub-tables.
	Input string
	// Explorer keeps the explorer's local output ([io] explorer). Off by default: the tests
	// count what the output under test received, and metrics sum over outputs.
	Explorer bool
}

func defaultIOConf() ioConf {
	return ioConf{
		QueuePoints: 4000, QueueMB: 2, BatchPoints: 500, FlushInterval: 200 * time.Millisecond, StopTimeout: 10 * time.Second,
		QueueBatches: 4, RetryInitial: 200 * time.Millisecond, RetryMax: time.Second, RetryMaxElapsed: 2 * time.Second,
		CapacityMB: 512, Timeout: 30 * time.Second,
	}
}

// uploaderModel is how the apmkit under test bounds the uploader's memory. The uploader
// moved from a queue of points (queue_max_points) to a budget of line-protocol bytes
// (queue_max_mb, with max_in_flight requests per output); TestMain reads which one the
// binary has from `apmkit sample`, so the tests configure and bound what it really has.
var uploaderModel struct {
	bytes    bool // queue_max_mb
	inFlight int  // requests an output sends at once (max_in_flight's default, else 1)
}

// spillGroup is how many batches the byte-budget uploader takes from memory at once to
// write them to the spill; they are off the memory queue but not yet on disk.
const spillGroup = 16

// memoryQueueBound is the most batches the output's memory queue can show: queue_max_batches
// starts the spill writer, and while it writes a group, up to a group's worth of new batches
// can arrive before it takes the next one.
func (c ioConf) memoryQueueBound() int {
	if uploaderModel.bytes {
		return c.QueueBatches + spillGroup
	}
	return c.QueueBatches
}

// memoryBatches is the most batches of an output the uploader holds in memory: the
// memory queue, those in flight, those being written to the spill, and the open one.
func (c ioConf) memoryBatches() int {
	if uploaderModel.bytes {
		return c.QueueBatches + uploaderModel.inFlight + spillGroup + 1
	}
	return c.QueueBatches + 2
}

// memoryPoints is, for the points-bounded uploader, the most tracing points it holds in
// memory: the category queue and the batches of memoryBatches.
func (c ioConf) memoryPoints() int {
	return c.QueuePoints + c.memoryBatches()*c.BatchPoints
}

// memoryBytes is, for the byte-budget uploader, the most line protocol it holds in memory.
func (c ioConf) memoryBytes() int64 { return int64(c.QueueMB) << 20 }

// memorySpans bounds the entry spans whose points the uploader can hold in memory, hence
// what kill -9 can lose of what it acknowledged. An entry span is fed with its events in
// one call, so its lines are consecutive: the memory holds at most memory/unit whole spans
// (unit: the smallest span's points or bytes) plus one cut at each batch boundary.
// minUnitBytes is the smallest entry line plus events times the smallest event line, as
// the sink saw them.
func (c ioConf) memorySpans(events int, minUnitBytes int64) int {
	if uploaderModel.bytes {
		return int(c.memoryBytes()/max(minUnitBytes, 1)) + c.memoryBatches()
	}
	return c.memoryPoints()/(1+events) + c.memoryBatches() + 1
}

// memoryBoundKB is the RSS apmkit may reach under load with c, from its idle RSS: the
// uploader holds a bounded amount whatever the outage or the slowness, counted generously
// (16 KiB per queued point, or 8 bytes per byte of line protocol: its gzip form, buffers
// and GC headroom), plus 64 MiB for what an idle process has not allocated yet (the
// cache's memtables and block cache, gRPC connection buffers). An unbounded queue exceeds
// it within seconds of load.
func memoryBoundKB(idleKB int64, c ioConf) int64 {
	if uploaderModel.bytes {
		return idleKB + 64<<10 + 8*c.memoryBytes()>>10
	}
	return idleKB + 64<<10 + int64(c.memoryPoints())*16
}

// apmkitProc is one apmkit subprocess, restartable on the same config, ports and data
// dir.
type apmkitProc struct {
	t        *testing.T
	dir      string
	confDir  string
	dataDir  string
	logPath  string
	grpcAddr string
	apiAddr  string

	cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState
}

// startApmkit writes apmkit's config (dataway output to sinkURL, the Pinpoint input on one
// port, the HTTP API with pprof) and starts it. Ports are picked free beforehand; if one
// was taken meanwhile, it starts again on others.
func startApmkit(t *testing.T, sinkURL string, c ioConf) *apmkitProc {
	t.Helper()
	return startApmkitOn(t, sinkURL, c, "")
}

// startApmkitOn is startApmkit with the data dir at dataDir ("" = in the test's temp dir),
// e.g. on a small file system of the test's own.
func startApmkitOn(t *testing.T, sinkURL string, c ioConf, dataDir string) *apmkitProc {
	t.Helper()
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = filepath.Join(dir, "data")
	}
	p := &apmkitProc{t: t, dir: dir, confDir: filepath.Join(dir, "conf.d"), dataDir: dataDir, logPath: filepath.Join(dir, "apmkit.log")}
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill() // our own child, by its pid
			<-p.exited
		}
		if t.Failed() {
			t.Logf("apmkit log (last lines of %s):\n%s", p.logPath, tail(p.logPath, 60))
		}
	})
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if p.grpcAddr, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if p.apiAddr, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = p.writeConf(sinkURL, c); err != nil {
			t.Fatal(err)
		}
		if err = p.launch(); err == nil {
			return p
		}
		if !strings.Contains(tail(p.logPath, 20), "address already in use") {
			break
		}
	}
	t.Fatalf("apmkit did not start: %v\n%s", err, tail(p.logPath, 40))
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (p *apmkitProc) writeConf(sinkURL string, c ioConf) error {
	if err := os.MkdirAll(p.confDir, 0o755); err != nil {
		return err
	}
	main := fmt.Sprintf(`data_dir = %q
[http_api]
  listen = %q
  pprof = true
[log]
  level = "info"
[io]
  explorer = %v
  %s
  batch_max_points = %d
  flush_interval = %q
  stop_timeout = %q
`, p.dataDir, p.apiAddr, c.Explorer, queueKey(c), c.BatchPoints, c.FlushInterval.String(), c.StopTimeout.String())
	if c.Outputs != "" {
		main += c.Outputs
	} else {
		main += fmt.Sprintf(`[[io.outputs]]
  type = "dataway"
  url = %q
  timeout = %q
  queue_max_batches = %d
  retry_initial = %q
  retry_max = %q
  retry_max_elapsed = %q
  capacity_mb = %d
`, sinkURL+"?token=tkn_faulttest", c.Timeout.String(), c.QueueBatches,
			c.RetryInitial.String(), c.RetryMax.String(), c.RetryMaxElapsed.String(), c.CapacityMB)
	}
	input := fmt.Sprintf("[[inputs.pinpoint]]\n  address = %q\n  stat_address = \"\"\n  span_address = \"\"\n", p.grpcAddr) + c.Input
	if err := os.WriteFile(filepath.Join(p.confDir, "apmkit.conf"), []byte(main), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.confDir, "pinpoint.conf"), []byte(input), 0o644)
}

// queueKey is the [io] line that bounds the uploader's memory.
func queueKey(c ioConf) string {
	if uploaderModel.bytes {
		return fmt.Sprintf("queue_max_mb = %d", c.QueueMB)
	}
	return fmt.Sprintf("queue_max_points = %d", c.QueuePoints)
}

// launch starts the process (appending to the log) and waits until /v1/ping answers.
func (p *apmkitProc) launch() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== faulttest: starting apmkit at %s ====\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bins["apmkit"], "run", "--conf-dir", p.confDir, "--data-dir", p.dataDir)
	// The environment must not change the config under test (ENV_DATAWAY would add an
	// output, ENV_HTTP_LISTEN move the API).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENV_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p.cmd, p.exited, p.state = cmd, make(chan struct{}), nil
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		logf.Close()
		close(p.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("apmkit exited during start: %v", p.state)
		}
		if _, err := p.get("/v1/ping"); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("apmkit: /v1/ping did not answer within 60s")
}

// restart starts apmkit again on the same config, ports and data dir.
func (p *apmkitProc) restart() {
	p.t.Helper()
	if p.running() {
		p.t.Fatal("restart: apmkit is still running")
	}
	if err := p.launch(); err != nil {
		p.t.Fatalf("apmkit did not start again on the same data dir: %v\n%s", err, tail(p.logPath, 40))
	}
}

func (p *apmkitProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *apmkitProc) pid() int { return p.cmd.Process.Pid }

// terminate sends SIGTERM and waits for the exit; it returns the exit code.
func (p *apmkitProc) terminate() int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	// The graceful stop is bounded by stop_timeout plus apmkit's 5 s margin.
	select {
	case <-p.exited:
	case <-time.After(90 * time.Second):
		p.t.Fatalf("apmkit did not exit within 90s of SIGTERM\n%s", tail(p.logPath, 40))
	}
	return p.state.ExitCode()
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *apmkitProc) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("SIGKILL: %v", err)
	}
	<-p.exited
}

var apiClient = &http.Client{Timeout: 30 * time.Second}

func (p *apmkitProc) get(path string) ([]byte, error) {
	res, err := apiClient.Get("http://" + p.apiAddr + path)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return b, nil
}

// metrics scrapes /metrics.
func (p *apmkitProc) metrics() promSet {
	p.t.Helper()
	b, err := p.get("/metrics")
	if err != nil {
		p.t.Fatalf("scrape /metrics: %v", err)
	}
	m, err := parseProm(b)
	if err != nil {
		p.t.Fatalf("parse /metrics: %v", err)
	}
	return m
}

// gc makes apmkit collect garbage now (pprof's heap profile with gc=1), so heap figures
// read afterwards are live memory, not garbage waiting for the next cycle.
func (p *apmkitProc) gc() {
	p.t.Helper()
	if _, err := p.get("/debug/pprof/heap?gc=1"); err != nil {
		p.t.Fatalf("GET /debug/pprof/heap?gc=1: %v", err)
	}
}

// procStatus reads a kB figure (VmRSS, VmHWM) of /proc/<pid>/status.
func (p *apmkitProc) procStatus(key string) int64 {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		p.t.Fatalf("read /proc/%d/status: %v", p.pid(), err)
	}
	kb, err := parseStatusKB(b, key)
	if err != nil {
		p.t.Fatal(err)
	}
	return kb
}

func parseStatusKB(b []byte, key string) (int64, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: %s %q", key, rest)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc status: no %s", key)
}

// promSet is a scrape: value by series, a series being the metric name with its labels
// as "name{k=v,k=v}" (labels sorted, values unquoted).
type promSet map[string]float64

// sum adds the values of the series of name whose labels include every k=v of match.
func (m promSet) sum(name string, match ...string) float64 {
	total := 0.0
	for series, v := range m {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		labels = strings.TrimSuffix(labels, "}")
		set := map[string]bool{}
		for _, kv := range strings.Split(labels, ",") {
			set[kv] = true
		}
		ok := true
		for _, kv := range match {
			if !set[kv] {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// has reports whether the scrape has any series of name.
func (m promSet) has(name string) bool {
	for series := range m {
		if n, _, _ := strings.Cut(series, "{"); n == name {
			return true
		}
	}
	return false
}

// names lists the metric names with a prefix, for failure messages.
func (m promSet) names(prefix string) []string {
	seen := map[string]bool{}
	for series := range m {
		if n, _, _ := strings.Cut(series, "{"); strings.HasPrefix(n, prefix) {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// parseProm reads the Prometheus text format as promhttp writes it: comment lines, then
// `name{label="value",...} value` with \\, \" and \n escapes in values.
func parseProm(b []byte) (promSet, error) {
	m := promSet{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, err := splitSample(line)
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		m[series] = v
	}
	return m, sc.Err()
}

func splitSample(line string) (series, value string, err error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", "", fmt.Errorf("line %q: no value", line)
	}
	name := line[:i]
	rest := line[i:]
	var labels []string
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			k, after, ok := strings.Cut(rest, "=\"")
			if !ok {
				return "", "", fmt.Errorf("line %q: bad labels", line)
			}
			var val strings.Builder
			j := 0
			for ; j < len(after) && after[j] != '"'; j++ {
				if after[j] == '\\' && j+1 < len(after) {
					j++
					switch after[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(after[j])
					}
					continue
				}
				val.WriteByte(after[j])
			}
			if j >= len(after) {
				return "", "", fmt.Errorf("line %q: unterminated label value", line)
			}
			labels = append(labels, k+"="+val.String())
			rest = after[j+1:]
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return "", "", fmt.Errorf("line %q: no value", line)
	}
	sort.Strings(labels)
	return name + "{" + strings.Join(labels, ",") + "}", f[0], nil
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crashOf is what a Go crash in the log says first (the fatal error or panic and the
// goroutine that hit it), else the log's tail: a goroutine dump's last lines say nothing.
func crashOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	text := string(b)
	for _, mark := range []string{"fatal error:", "unexpected fault address", "panic:", "SIGBUS", "SIGSEGV"} {
		if i := strings.Index(text, mark); i >= 0 {
			start := strings.LastIndexByte(text[:i], '\n') + 1
			lines := strings.SplitN(text[start:], "\n", 40)
			return strings.Join(lines[:min(len(lines), 39)], "\n")
		}
	}
	return tail(path, 40)
}

// waitFor polls cond every 100 ms until it holds; at the deadline it fails the test with
// what it waited for and cond's last description of the state. The deadline only bounds
// the test's duration: it is never the thing asserted.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
