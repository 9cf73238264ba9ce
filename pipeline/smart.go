package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/apmkit/apmkit/point"
)

// SmartSamplerConfig is [inputs.<name>.smart_sampler]: the "intelligent sampling" policy.
//
// Each minute, entry URLs (service + entry resource) are classed by the previous minute's
// statistics: `error` if a trace of it had an error, else `slow` if one took at least
// slow_threshold, else `normal` (everything is normal in the first minute). Each class has
// a per-minute quota of traces that depends on the host CPU usage apmkit measures:
//
//	CPU        < 30%   30-60%   >= 60%
//	error       100      50       10
//	slow        100      50       10
//	normal       20      10        5
//
// and every URL gets at least 2 traces a minute when error or slow, 1 when normal, even
// beyond its class quota. The decision is made at the first entry span of a trace and
// remembered (bounded) for the trace's other spans; a chunk that arrives before any entry
// span of its trace is kept. When enabled it replaces sampler.sampling_rate.
type SmartSamplerConfig struct {
	Enabled       bool          `toml:"enabled" doc:"Turn on per-URL quota sampling (replaces sampling_rate); see the README for the policy."`
	SlowThreshold time.Duration `toml:"slow_threshold" doc:"A trace at least this long marks its URL slow for the next minute."`
}

// UnmarshalJSON reads the ENV_INPUT_<NAME>_SMART_SAMPLER form:
// {"enabled": true, "slow_threshold": "800ms"}; keys not given keep their value.
func (c *SmartSamplerConfig) UnmarshalJSON(b []byte) error {
	var raw struct {
		Enabled       *bool   `json:"enabled"`
		SlowThreshold *string `json:"slow_threshold"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if raw.Enabled != nil {
		c.Enabled = *raw.Enabled
	}
	if raw.SlowThreshold != nil {
		d, err := time.ParseDuration(*raw.SlowThreshold)
		if err != nil {
			return fmt.Errorf("slow_threshold: %q is not a duration (e.g. 800ms)", *raw.SlowThreshold)
		}
		c.SlowThreshold = d
	}
	return nil
}

// DefaultSmartSampler is the default (off) smart sampler config.
func DefaultSmartSampler() SmartSamplerConfig {
	return SmartSamplerConfig{SlowThreshold: 800 * time.Millisecond}
}

// CPUMeter reports the host's CPU usage in percent (0..100) since its previous call.
type CPUMeter interface {
	Percent() float64
}

type urlClass int

const (
	classNormal urlClass = iota
	classSlow
	classError
)

// quotas[tier][class] are traces per minute; tiers are CPU < 30%, 30-60%, >= 60%.
var quotas = [3][3]int{
	{20, 100, 100},
	{10, 50, 50},
	{5, 10, 10},
}

var minPerURL = [3]int{1, 2, 2}

const (
	smartMaxURLs   = 10_000
	smartMaxTraces = 100_000
)

type urlStats struct {
	errors bool
	slow   bool
}

type smartSampler struct {
	slow time.Duration
	now  func() time.Time
	cpu  CPUMeter

	mu      sync.Mutex
	minute  int64
	classes map[string]urlClass  // from the previous minute
	stats   map[string]*urlStats // this minute
	used    [3]int               // traces kept this minute, per class
	perURL  map[string]int       // traces kept this minute, per URL
	tier    int
	decided *lru.Cache[string, bool]
}

func newSmartSampler(cfg SmartSamplerConfig, now func() time.Time, cpu CPUMeter) *smartSampler {
	if cpu == nil {
		cpu = newProcCPU()
	}
	if cfg.SlowThreshold <= 0 {
		cfg.SlowThreshold = DefaultSmartSampler().SlowThreshold
	}
	decided, _ := lru.New[string, bool](smartMaxTraces)
	s := &smartSampler{slow: cfg.SlowThreshold, now: now, cpu: cpu, decided: decided, minute: -1}
	return s
}

// decide returns the decision for the group's trace, making it at its first entry span.
func (s *smartSampler) decide(g *group) bool {
	if keep, ok := s.decided.Get(g.traceID); ok {
		return keep
	}
	if g.entry == nil {
		return true // nothing to class it by yet: keep rather than lose it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollover()
	url := g.service + " " + stringField(g.entry, fieldResource)
	s.record(url, g)
	class := s.classes[url]
	keep := s.perURL[url] < minPerURL[class] || s.used[class] < quotas[s.tier][class]
	if keep {
		s.used[class]++
		s.perURL[url]++
	}
	s.decided.Add(g.traceID, keep)
	return keep
}

// rollover starts a new minute: the last minute's statistics become the classes, and the
// CPU tier is measured.
func (s *smartSampler) rollover() {
	minute := s.now().Unix() / 60
	if minute == s.minute {
		return
	}
	s.classes = map[string]urlClass{}
	if minute == s.minute+1 {
		for url, st := range s.stats {
			switch {
			case st.errors:
				s.classes[url] = classError
			case st.slow:
				s.classes[url] = classSlow
			}
		}
	}
	s.minute = minute
	s.stats = map[string]*urlStats{}
	s.perURL = map[string]int{}
	s.used = [3]int{}
	s.tier = cpuTier(s.cpu.Percent())
}

func cpuTier(percent float64) int {
	switch {
	case percent < 30:
		return 0
	case percent < 60:
		return 1
	}
	return 2
}

// record adds a trace's entry to this minute's statistics of its URL.
func (s *smartSampler) record(url string, g *group) {
	st, ok := s.stats[url]
	if !ok {
		if len(s.stats) >= smartMaxURLs {
			return // bounded: further URLs stay normal next minute
		}
		st = &urlStats{}
		s.stats[url] = st
	}
	st.errors = st.errors || g.hasError
	if d, ok := g.entry.Field(fieldDuration); ok && d.Kind() == point.KindInt && time.Duration(d.IntValue())*time.Microsecond >= s.slow {
		st.slow = true
	}
}

// procCPU measures the host CPU usage from /proc/stat between two calls.
type procCPU struct {
	mu          sync.Mutex
	idle, total uint64
}

func newProcCPU() *procCPU {
	c := &procCPU{}
	c.Percent() // the baseline for the first minute
	return c
}

// Percent returns the busy share since the previous call; 0 when /proc/stat is unreadable
// (the lowest tier keeps the most traces, so a missing meter never loses data).
func (c *procCPU) Percent() float64 {
	idle, total, ok := readProcStat()
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	dIdle, dTotal := idle-c.idle, total-c.total
	c.idle, c.total = idle, total
	if dTotal == 0 || dIdle > dTotal {
		return 0
	}
	return 100 * float64(dTotal-dIdle) / float64(dTotal)
}

func readProcStat() (idle, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range fields[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return idle, total, true
}
