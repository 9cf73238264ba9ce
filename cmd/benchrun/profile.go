package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// profileDelay is how long after the load's start the CPU profile begins (past the
// agents' connecting and the first batches), and profileTail how long before its end the
// profile must be over, so it covers steady load only.
const (
	profileDelay = 2 * time.Second
	profileTail  = 2 * time.Second
	profileTopN  = 20
)

// cpuProfile is what benchrun took from apmkit's /debug/pprof/profile during a run. The
// text of the listings is kept so -render can write the report after the work folder is gone.
type cpuProfile struct {
	Path     string       `json:"path,omitempty"`      // cpu.pprof in the run's folder
	Seconds  int          `json:"seconds,omitempty"`   // the profile's length asked for
	SampledS float64      `json:"sampled_s,omitempty"` // CPU time in the samples
	WallS    float64      `json:"wall_s,omitempty"`    // the profile's duration
	Top      string       `json:"top,omitempty"`       // go tool pprof -top
	TopCum   string       `json:"top_cum,omitempty"`   // go tool pprof -top -cum
	Stages   []stageShare `json:"stages,omitempty"`
	Err      string       `json:"err,omitempty"` // why there is no profile, or no listing
}

// stageShare is one stage's part of a profile's CPU, in % of the samples' CPU.
type stageShare struct {
	Stage  string  `json:"stage"`
	Pct    float64 `json:"pct"`     // samples attributed to the stage (the stages add up to 100)
	CumPct float64 `json:"cum_pct"` // samples with a frame of the stage anywhere on the stack
	Malloc float64 `json:"malloc"`  // of Pct: samples inside runtime.mallocgc
}

// profileSeconds is the length of the CPU profile of a run of load time d: at most limit,
// starting profileDelay into the load and ending profileTail before its end; 0 = none.
func profileSeconds(limit, d time.Duration) int {
	s := min(limit, d-profileDelay-profileTail)
	if s < time.Second {
		return 0
	}
	return int(s / time.Second)
}

// profileFetch is a CPU profile being taken during the load.
type profileFetch struct {
	cancel context.CancelFunc
	done   chan struct{}
	prof   *cpuProfile
}

// startProfile fetches GET http://api/debug/pprof/profile?seconds=S into dir/cpu.pprof
// in the background, profileDelay from now. Call it when the load starts.
func (b *bench) startProfile(ctx context.Context, api, dir string) *profileFetch {
	ctx, cancel := context.WithCancel(ctx)
	f := &profileFetch{cancel: cancel, done: make(chan struct{}), prof: &cpuProfile{Seconds: profileSeconds(b.opts.profile, b.opts.duration)}}
	go func() {
		defer close(f.done)
		if f.prof.Seconds == 0 {
			f.prof.Err = fmt.Sprintf("no profile: the load (%s) is too short for a profile starting %s in and ending %s before its end",
				b.opts.duration, profileDelay, profileTail)
			return
		}
		select {
		case <-time.After(profileDelay):
		case <-ctx.Done():
			f.prof.Err = "no profile: the load ended before the profile started"
			return
		}
		path := filepath.Join(dir, "cpu.pprof")
		if err := fetchProfile(ctx, api, f.prof.Seconds, path); err != nil {
			f.prof.Err = "profile fetch failed: " + err.Error()
			return
		}
		f.prof.Path = path
	}()
	return f
}

// wait returns the profile once fetched; with abort, it stops the fetch first (the load failed).
func (f *profileFetch) wait(abort bool) *cpuProfile {
	if abort {
		f.cancel()
	}
	<-f.done
	f.cancel()
	return f.prof
}

func fetchProfile(ctx context.Context, api string, seconds int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", api, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, res.Status, oneLine(strings.TrimSpace(string(body[:min(len(body), 200)]))))
	}
	return os.WriteFile(path, body, 0o644)
}

// analyzeProfile fills the listings (go tool pprof against the apmkit binary benchrun
// built) and the stage shares. Errors are noted in the profile, never fatal.
func (b *bench) analyzeProfile(ctx context.Context, r *result) {
	p := r.Profile
	if p == nil || p.Path == "" {
		return
	}
	var errs []string
	if err := p.summarize(); err != nil {
		errs = append(errs, err.Error())
	}
	for _, cum := range []bool{false, true} {
		args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", profileTopN)}
		if cum {
			args = append(args, "-cum")
		}
		args = append(args, b.bins["apmkit"], p.Path)
		r.Commands = append(r.Commands, commandLine(b.goBin(), args))
		cmd := exec.CommandContext(ctx, b.goBin(), args...)
		cmd.Dir = b.opts.repo
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			errs = append(errs, fmt.Sprintf("go tool pprof: %v: %s", err, oneLine(strings.TrimSpace(stderr.String()))))
			break
		}
		if cum {
			p.TopCum = trimPprofTop(string(out))
		} else {
			p.Top = trimPprofTop(string(out))
		}
	}
	if len(errs) > 0 {
		p.Err = strings.Join(errs, "; ")
	}
}

// summarize computes the stage shares from the profile file.
func (p *cpuProfile) summarize() error {
	raw, err := os.ReadFile(p.Path)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	pr, err := parseProfile(raw)
	if err != nil {
		return fmt.Errorf("profile %s: %w", p.Path, err)
	}
	p.SampledS, p.WallS = pr.total/1e9, pr.duration/1e9
	p.Stages = stageShares(pr)
	return nil
}

// trimPprofTop drops the lines before "Duration:" (file, build id, time) from pprof -top.
func trimPprofTop(s string) string {
	if i := strings.Index(s, "Duration:"); i >= 0 {
		s = s[i:]
	}
	return strings.TrimRight(s, "\n") + "\n"
}

// parsedProfile is the part of a pprof profile the stage summary needs: each sample's
// stack (function names, leaf first, inlined frames expanded) and CPU nanoseconds.
type parsedProfile struct {
	stacks   [][]string
	values   []int64
	total    float64 // nanoseconds
	duration float64 // nanoseconds
}

// parseProfile decodes a (gzipped) profile.proto as runtime/pprof writes it. It reads the
// wire format with protowire rather than importing github.com/google/pprof, which is not
// in apmkit's module graph.
func parseProfile(raw []byte) (*parsedProfile, error) {
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	type sample struct {
		locs   []uint64
		values []int64
	}
	var (
		samples     []sample
		sampleTypes []int64 // string index of each value's type
		strs        []string
		locFuncs    = map[uint64][]uint64{} // location id -> function ids, innermost first
		funcNames   = map[uint64]int64{}    // function id -> string index
		duration    int64
	)
	err := eachField(raw, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch num {
		case 1: // sample_type
			var t int64
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				if n == 1 {
					t = int64(v)
				}
				return nil
			})
			sampleTypes = append(sampleTypes, t)
			return err
		case 2: // sample
			var s sample
			err := eachField(b, func(n protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					return appendVarints(&s.locs, typ, v, b)
				case 2:
					var vs []uint64
					if err := appendVarints(&vs, typ, v, b); err != nil {
						return err
					}
					for _, x := range vs {
						s.values = append(s.values, int64(x))
					}
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location
			var id uint64
			var funcs []uint64
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					id = v
				case 4: // line
					return eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
						if n == 1 {
							funcs = append(funcs, v)
						}
						return nil
					})
				}
				return nil
			})
			locFuncs[id] = funcs
			return err
		case 5: // function
			var id uint64
			var name int64
			err := eachField(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch n {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			funcNames[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(b))
		case 10: // duration_nanos
			duration = int64(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("profile.proto: %w", err)
	}
	str := func(i int64) string {
		if i < 0 || int(i) >= len(strs) {
			return "?"
		}
		return strs[i]
	}
	vi := len(sampleTypes) - 1 // cpu/nanoseconds is the last type of a CPU profile
	for i, t := range sampleTypes {
		if str(t) == "cpu" {
			vi = i
		}
	}
	if vi < 0 || len(samples) == 0 {
		return nil, errors.New("no samples (was apmkit idle?)")
	}
	p := &parsedProfile{duration: float64(duration)}
	for _, s := range samples {
		if vi >= len(s.values) {
			continue
		}
		var stack []string
		for _, l := range s.locs {
			for _, f := range locFuncs[l] {
				stack = append(stack, str(funcNames[f]))
			}
		}
		p.stacks = append(p.stacks, stack)
		p.values = append(p.values, s.values[vi])
		p.total += float64(s.values[vi])
	}
	if p.total == 0 {
		return nil, errors.New("no CPU in the samples")
	}
	return p, nil
}

// eachField calls fn for each field of a message: v for varints and fixed, b for bytes.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, uint64, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var val []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, n = protowire.ConsumeFixed32(b)
			v = uint64(v32)
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, val); err != nil {
			return err
		}
	}
	return nil
}

// appendVarints appends a repeated varint field, packed or not.
func appendVarints(dst *[]uint64, typ protowire.Type, v uint64, b []byte) error {
	if typ == protowire.VarintType {
		*dst = append(*dst, v)
		return nil
	}
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		*dst = append(*dst, x)
		b = b[n:]
	}
	return nil
}

// Stages of the full path, in the report's order. A sample belongs to the stage of its
// innermost frame in a package of stageRules; frames of other packages (the standard
// library, klauspost/compress, ...) count for their caller: gzip and net/http under the
// uploader are the uploader. GC's background work goes by its goroutine's root.
const (
	stageGRPC     = "gRPC receive + protobuf decode"
	stageInput    = "Pinpoint input (handlers, stats, meta)"
	stageTrace    = "span assembly + conversion (inputs/pinpoint/trace)"
	stageSpan     = "span encoding (span)"
	stagePoint    = "points, line protocol (point)"
	stagePipeline = "pipeline"
	stageIO       = "uploader: batching, gzip, HTTP (io)"
	stageCache    = "disk cache and spill (cache, badger)"
	stageApmkit   = "apmkit, other packages"
	stageGC       = "GC background work (gcBgMarkWorker, sweep, scavenge)"
	stageRuntime  = "no stage on the stack (scheduler, netpoll, profiler, /metrics)"
)

var stageOrder = []string{stageGRPC, stageInput, stageTrace, stageSpan, stagePoint, stagePipeline, stageIO,
	stageCache, stageApmkit, stageGC, stageRuntime}

// stageRules map a function's package to a stage: the first rule whose package equals the
// function's, or is a parent folder of it, wins.
var stageRules = []struct{ pkg, stage string }{
	{"github.com/apmkit/apmkit/inputs/pinpoint/pb", stageGRPC},
	{"github.com/apmkit/apmkit/inputs/pinpoint/trace", stageTrace},
	{"github.com/apmkit/apmkit/inputs/pinpoint", stageInput},
	{"github.com/apmkit/apmkit/span", stageSpan},
	{"github.com/apmkit/apmkit/point", stagePoint},
	{"github.com/apmkit/apmkit/pipeline", stagePipeline},
	{"github.com/apmkit/apmkit/io", stageIO},
	{"github.com/apmkit/apmkit/cache", stageCache},
	{"github.com/apmkit/apmkit", stageApmkit},
	{"google.golang.org/grpc", stageGRPC},
	{"google.golang.org/protobuf", stageGRPC},
	{"golang.org/x/net/http2", stageGRPC},
	{"github.com/dgraph-io", stageCache},
}

// gcRoots are the GC's own goroutines.
var gcRoots = map[string]bool{"runtime.gcBgMarkWorker": true, "runtime.bgsweep": true, "runtime.bgscavenge": true}

// funcPackage is the import path of a function name as pprof writes it, e.g.
// "github.com/apmkit/apmkit/io.(*uploader).run.func1" -> "github.com/apmkit/apmkit/io".
func funcPackage(name string) string {
	if i := strings.IndexByte(name, '['); i >= 0 { // type parameters may hold paths
		name = name[:i]
	}
	slash := strings.LastIndexByte(name, '/') + 1
	if i := strings.IndexByte(name[slash:], '.'); i >= 0 {
		return name[:slash+i]
	}
	return name
}

// frameStage is the stage of a function, "" when its package is in no stage.
func frameStage(name string) string {
	pkg := funcPackage(name)
	for _, r := range stageRules {
		if pkg == r.pkg || strings.HasPrefix(pkg, r.pkg+"/") {
			return r.stage
		}
	}
	return ""
}

// sampleStage attributes a stack (leaf first) to one stage.
func sampleStage(stack []string) string {
	if len(stack) > 0 && gcRoots[stack[len(stack)-1]] {
		return stageGC
	}
	for _, f := range stack {
		if s := frameStage(f); s != "" {
			return s
		}
	}
	return stageRuntime
}

// stageShares sums a profile's samples by stage, in stageOrder, leaving out empty stages.
func stageShares(p *parsedProfile) []stageShare {
	own, cum, malloc := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for i, stack := range p.stacks {
		v := float64(p.values[i])
		s := sampleStage(stack)
		own[s] += v
		seen := map[string]bool{s: true}
		inMalloc := false
		for _, f := range stack {
			if f == "runtime.mallocgc" {
				inMalloc = true
			}
			if fs := frameStage(f); fs != "" {
				seen[fs] = true
			}
		}
		if inMalloc {
			malloc[s] += v
		}
		for st := range seen {
			cum[st] += v
		}
	}
	var out []stageShare
	for _, s := range stageOrder {
		if own[s] == 0 && cum[s] == 0 {
			continue
		}
		out = append(out, stageShare{Stage: s, Pct: 100 * own[s] / p.total, CumPct: 100 * cum[s] / p.total, Malloc: 100 * malloc[s] / p.total})
	}
	return out
}
