package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apmkit/apmkit/internal/urltemplate"
)

// SmartSamplerConfig is [inputs.<name>.smart_sampler]: the "intelligent sampling" policy.
// When enabled it replaces sampler.sampling_rate.
//
// Every trace is counted against its URL: the service and URL template (urltemplate.Template) of its
// root span (the entry span without a parent; when the root did not come within the
// decision wait, the entry span that started first). Each minute a URL is classed by the
// previous minute: `error` if a trace of it had an error, else `slow` if one took at least
// slow_threshold, else `normal` (also in its first minute). Each URL has, per minute, a
// quota of traces per class that shrinks as the host's CPU usage (measured once a minute)
// grows:
//
//	CPU        < 30%   30-60%   >= 60%
//	error       100      50       10
//	slow        100      50       10
//	normal       20      10        5
//
// Errors have their own quota: a trace with an error in any span is counted in its URL's
// error bucket and kept while that bucket is under the error quota, whatever the URL's
// other traffic. A slow trace (its root took at least slow_threshold) is counted in the slow
// bucket with the slow quota (the error quota when the URL is in the error class); any
// other trace in the normal bucket with the quota of its URL's class. So within a minute a
// URL keeps at most error + slow + class quota traces, errors first served by their own.
//
// The table of URLs is bounded (smartMaxURLs templates); traces of further URLs share one
// bucket, classed and limited like a URL. Traces kept by keep_rare_resource are counted for
// the classes but use no quota.
type SmartSamplerConfig struct {
	Enabled       bool          `toml:"enabled" doc:"Turn on per-URL quota sampling (replaces sampling_rate): traces per URL template and minute by class\n(error, slow, normal) and host CPU; see the README for the policy."`
	SlowThreshold time.Duration `toml:"slow_threshold" doc:"A trace whose root span takes at least this long is slow: it uses the slow quota, and its URL is\nslow for the next minute."`
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
	numClasses
)

// quotas[tier][class] are traces per URL and minute; tiers are CPU < 30%, 30-60%, >= 60%.
var quotas = [3][numClasses]int{
	{20, 100, 100},
	{10, 50, 50},
	{5, 10, 10},
}

const (
	// smartMaxURLs bounds the URL templates counted per minute.
	smartMaxURLs = 10_000
	// smartMaxKey bounds a URL key (service and template) in bytes.
	smartMaxKey = 512
)

// urlState is one URL's minute.
type urlState struct {
	class urlClass         // from the previous minute
	used  [numClasses]int  // traces kept this minute, by bucket (the trace's own class)
	saw   [numClasses]bool // this minute had an error, slow, any trace
}

type smartSampler struct {
	slow    time.Duration
	now     func() time.Time
	cpu     CPUMeter
	metrics *metrics
	maxURLs int

	mu     sync.Mutex
	minute int64
	tier   int
	urls   map[string]*urlState
	other  urlState // the shared bucket of URLs beyond maxURLs
}

func newSmartSampler(cfg SmartSamplerConfig, now func() time.Time, cpu CPUMeter, m *metrics) *smartSampler {
	if cpu == nil {
		cpu = newProcCPU()
	}
	if cfg.SlowThreshold <= 0 {
		cfg.SlowThreshold = DefaultSmartSampler().SlowThreshold
	}
	return &smartSampler{slow: cfg.SlowThreshold, now: now, cpu: cpu, metrics: m, maxURLs: smartMaxURLs,
		minute: math.MinInt64, urls: map[string]*urlState{}}
}

// decide counts a trace against its URL and reports whether it is within the quota of its
// bucket. service and resource are the root's, durationUs its duration. A forced trace
// (kept for another reason) is counted for the classes and uses no quota.
func (s *smartSampler) decide(service, resource string, hasError bool, durationUs int64, forced bool) bool {
	key := service + " " + urltemplate.Template(resource)
	if len(key) > smartMaxKey {
		key = key[:smartMaxKey]
	}
	own := classNormal
	switch {
	case hasError:
		own = classError
	case time.Duration(durationUs)*time.Microsecond >= s.slow:
		own = classSlow
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollover()
	st := s.urls[key]
	if st == nil {
		if len(s.urls) < s.maxURLs {
			st = &urlState{}
			s.urls[key] = st
			s.metrics.smartURLs.Set(float64(len(s.urls)))
		} else {
			st = &s.other
			s.metrics.smartOverflow.Inc()
		}
	}
	st.saw[own] = true
	if forced {
		return true
	}
	if st.used[own] >= quotas[s.tier][max(own, st.class)] {
		return false
	}
	st.used[own]++
	return true
}

// rollover starts a new minute: URLs seen last minute get their class from it, the others
// are forgotten (they would be normal), and the CPU tier is measured.
func (s *smartSampler) rollover() {
	minute := s.now().Unix() / 60
	if minute == s.minute {
		return
	}
	consecutive := minute == s.minute+1
	next := func(st *urlState) bool {
		seen := consecutive && (st.saw[classNormal] || st.saw[classSlow] || st.saw[classError])
		switch {
		case !seen:
			st.class = classNormal
		case st.saw[classError]:
			st.class = classError
		case st.saw[classSlow]:
			st.class = classSlow
		default:
			st.class = classNormal
		}
		st.used, st.saw = [numClasses]int{}, [numClasses]bool{}
		return seen
	}
	for key, st := range s.urls {
		if !next(st) {
			delete(s.urls, key)
		}
	}
	next(&s.other)
	s.metrics.smartURLs.Set(float64(len(s.urls)))
	s.minute = minute
	cpu := s.cpu.Percent()
	s.metrics.smartCPU.Set(cpu)
	s.tier = cpuTier(cpu)
}

func (s *smartSampler) urlCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.urls)
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
