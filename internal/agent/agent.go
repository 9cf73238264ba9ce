// Package agent wires apmkit together: config -> cache -> uploader -> pipelines -> inputs,
// and stops them in reverse order, flushing on the way.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs"
	apmio "github.com/apmkit/apmkit/io"
	"github.com/apmkit/apmkit/pipeline"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// Agent is one running apmkit.
type Agent struct {
	cfg      *config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	hostname string
	started  time.Time

	store    cacheBackend
	uploader *apmio.Uploader
	inputs   []*runningInput
	api      *apiServer
}

// cacheBackend is what the agent needs of its cache: the namespaces it hands the inputs,
// and its health for /v1/ping, /v1/stats and /metrics. badger and Redis both have it.
type cacheBackend interface {
	cache.Backend
	// State is the cache's state and, unless ok, what is wrong; cheap, for every ping.
	State() (cache.State, string)
	Stats() cache.Stats
}

var (
	_ cacheBackend = (*cache.DB)(nil)
	_ cacheBackend = (*cache.Redis)(nil)
)

// runningInput is one started input instance.
type runningInput struct {
	plugin   string
	instance int    // position among the plugin's instances, from 1
	alias    string // stable identity: the config's InstanceAlias, else "#" + instance
	source   string
	input    inputs.Input
	pipe     *pipeline.Pipeline
}

// New prepares an agent; nothing runs until Start.
func New(cfg *config.Config, log *slog.Logger) (*Agent, error) {
	host := cfg.Main.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: host name: %w (set hostname in %s)", err, config.MainFile)
		}
		host = h
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Agent{cfg: cfg, log: log, reg: reg, hostname: host}, nil
}

// Start opens the cache, starts the uploader, the inputs and the HTTP API. If anything fails,
// what was started is stopped again and the error says what failed.
func (a *Agent) Start(ctx context.Context) (err error) {
	a.started = time.Now()
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Main.IO.StopTimeout)
			defer cancel()
			_ = a.Stop(stopCtx)
		}
	}()
	dataDir := a.cfg.Main.DataDir
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	if a.store, err = a.openCache(); err != nil {
		return err
	}
	a.reg.MustRegister(cacheCollector{store: a.store})
	if a.uploader, err = apmio.New(a.cfg.Main.IO, dataDir, a.log.With("component", "io"), a.reg); err != nil {
		return err
	}
	if err := a.uploader.Start(ctx); err != nil {
		return err
	}
	if st := a.uploader.TraceStore(); st != nil {
		a.reg.MustRegister(st.Collector())
	}
	for _, out := range a.uploader.Outputs() {
		a.log.Info("writing to output", "output", out)
	}
	if err := a.startInputs(ctx); err != nil {
		return err
	}
	if a.api, err = startAPI(a.cfg.Main.HTTPAPI, a); err != nil {
		return err
	}
	return nil
}

// instanceAlias is the instance's stable identity: what its config says (inputs.Aliaser),
// else its position.
func instanceAlias(cfg inputs.Config, instance int) string {
	if a, ok := cfg.(inputs.Aliaser); ok && a.InstanceAlias() != "" {
		return a.InstanceAlias()
	}
	return fmt.Sprintf("#%d", instance)
}

// openCache opens the cache the inputs' namespaces live in: Redis when redis_url is set,
// else badger in the data dir. On a full disk (or when badger fails to open) badger still
// opens, degraded, and says so in its log, /v1/ping and /metrics; Redis must answer at
// start (its outages later are survived the same way).
func (a *Agent) openCache() (cacheBackend, error) {
	cfg := a.cfg.Main.Cache
	if cfg.RedisURL != "" {
		r, err := cache.OpenRedis(cfg, a.log)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	db, err := cache.OpenBadger(filepath.Join(a.cfg.Main.DataDir, "cache"), cfg, a.log)
	if err != nil {
		return nil, err
	}
	return db, nil
}

func (a *Agent) startInputs(ctx context.Context) error {
	count := map[string]int{}
	for _, inst := range a.cfg.Inputs {
		plugin, _ := inputs.Get(inst.Plugin)
		count[inst.Plugin]++
		in, err := plugin.New(inst.Config)
		if err != nil {
			return fmt.Errorf("%s: %w", inst.Source, err)
		}
		ri := &runningInput{plugin: inst.Plugin, instance: count[inst.Plugin], alias: instanceAlias(inst.Config, count[inst.Plugin]), source: inst.Source, input: in}
		h, err := a.newHost(ri, inst.Config)
		if err != nil {
			return fmt.Errorf("%s: %w", inst.Source, err)
		}
		ri.pipe = h.pipe
		ri.pipe.Start()
		if err := in.Start(ctx, h); err != nil {
			_ = ri.pipe.Stop(ctx) // holds nothing: the input fed it nothing
			return fmt.Errorf("input %s (%s) failed to start: %w", inst.Plugin, inst.Source, err)
		}
		a.inputs = append(a.inputs, ri)
		a.log.Info("input started", "input", inst.Plugin, "instance", ri.instance, "alias", ri.alias, "from", inst.Source)
	}
	if len(a.inputs) == 0 {
		a.log.Warn("no input is enabled: copy a sample from conf.d or set " + config.EnvDefaultEnabledInputs)
	}
	return nil
}

// Stop stops inputs (newest first), each followed by its pipeline (which decides the traces
// still waiting for a decision and hands the kept spans to the uploader), then the
// uploader (flushing to outputs or the spill), then the cache. It is safe to call more
// than once and before Start.
func (a *Agent) Stop(ctx context.Context) error {
	var errs []error
	// The API goes first: it reads the input list that Stop tears down.
	if a.api != nil {
		errs = append(errs, a.api.stop(ctx))
		a.api = nil
	}
	for i := len(a.inputs) - 1; i >= 0; i-- {
		ri := a.inputs[i]
		if err := ri.input.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop input %s #%d: %w", ri.plugin, ri.instance, err))
		}
		if err := ri.pipe.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop pipeline of input %s #%d: %w", ri.plugin, ri.instance, err))
		}
	}
	a.inputs = nil
	if a.uploader != nil {
		errs = append(errs, a.uploader.Stop(ctx))
	}
	if a.store != nil {
		errs = append(errs, closeWithin(ctx, a.store.Close))
		a.store = nil
	}
	return errors.Join(errs...)
}

// Run starts the agent, waits for ctx to end, then stops it within the io stop timeout
// plus a margin for inputs.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	a.log.Info("apmkit is running", "data_dir", a.cfg.Main.DataDir, "http_api", a.APIAddr())
	<-ctx.Done()
	a.log.Info("stopping: flushing queues")
	stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Main.IO.StopTimeout+5*time.Second)
	defer cancel()
	if err := a.Stop(stopCtx); err != nil {
		return fmt.Errorf("agent: stop: %w", err)
	}
	a.log.Info("stopped")
	return nil
}

// APIAddr is the address the HTTP API listens on ("" when disabled or not started).
func (a *Agent) APIAddr() string {
	if a.api == nil {
		return ""
	}
	return a.api.addr
}

// host is what one input instance sees of the agent.
type host struct {
	agent *Agent
	alias string
	pipe  *pipeline.Pipeline
	log   *slog.Logger
	reg   prometheus.Registerer
}

func (a *Agent) newHost(ri *runningInput, cfg inputs.Config) (*host, error) {
	pc := pipeline.Config{}
	if c, ok := cfg.(pipeline.Configurer); ok {
		pc = c.PipelineConfig()
	}
	pc.GlobalTags = a.cfg.Main.GlobalTags
	labels := prometheus.Labels{"input": ri.plugin, "instance": fmt.Sprint(ri.instance)}
	reg := prometheus.WrapRegistererWith(labels, a.reg)
	// Kept spans go to the uploader: from FeedSpan, or later, once their trace is decided.
	opts := pipeline.Options{Metrics: reg, Emit: a.uploader.FeedSpan}
	// Replicas sharing the cache follow each other's trace decisions.
	opts.Decisions, _ = a.store.Namespace("pipeline@" + ri.alias).(cache.Shared)
	pipe, err := pipeline.New(pc, opts)
	if err != nil {
		return nil, err
	}
	return &host{
		agent: a,
		alias: ri.alias,
		pipe:  pipe,
		log:   a.log.With("input", ri.plugin, "instance", ri.instance, "alias", ri.alias),
		reg:   reg,
	}, nil
}

func (h *host) Feed(ctx context.Context, cat point.Category, pts []*point.Point) error {
	pts = h.pipe.Process(pts)
	if len(pts) == 0 {
		return nil
	}
	return h.agent.uploader.Feed(ctx, cat, pts)
}

// FeedSpan hands the span to the pipeline, which emits it to the uploader at once or, when
// a sampler or filter is configured, once its trace is decided.
func (h *host) FeedSpan(ctx context.Context, s *span.Span) error {
	return h.pipe.ProcessSpan(ctx, s)
}

// Store returns the instance's own namespace, "<namespace>@<alias>". Versions before
// aliases kept every instance's keys in "<namespace>" itself: what is left there moves to
// the first instance that opens the namespace (the first in the config), which holds all
// of it when it was the only one.
func (h *host) Store(namespace string) (cache.Store, error) {
	scoped := namespace + "@" + h.alias
	moved, err := h.agent.store.MoveNamespace(namespace, scoped)
	if err != nil {
		return nil, err
	}
	if moved > 0 {
		h.log.Info("cache: state of an earlier version moved to this instance", "from", namespace, "to", scoped, "keys", moved)
	}
	return h.agent.store.Namespace(scoped), nil
}

func (h *host) Logger() *slog.Logger           { return h.log }
func (h *host) Metrics() prometheus.Registerer { return h.reg }
func (h *host) DataDir() string                { return h.agent.cfg.Main.DataDir }
func (h *host) Hostname() string               { return h.agent.hostname }

// closeWithin gives close until ctx ends. badger retries a failed memtable flush forever
// (e.g. when the data dir was removed under a running apmkit), Redis' last replay of what
// it kept in memory may take a while; a stop must still end.
func closeWithin(ctx context.Context, close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("cache did not close in time: %w", ctx.Err())
	}
}

// cacheCollector exposes the cache's Stats on /metrics, from one snapshot per scrape. Each
// backend reports its own refusal reasons; the disk's numbers come from badger, the errors
// and the fallback from Redis.
type cacheCollector struct{ store cacheBackend }

var (
	cacheSizeDesc     = prometheus.NewDesc("apmkit_cache_size_bytes", "Size of the cache: on disk, in memory in the memory state, or apmkit's keys and values in Redis.", nil, nil)
	cacheStateDesc    = prometheus.NewDesc("apmkit_cache_state", "1 for the cache's state: ok, disk_full (writes refused), memory (badger closed, degraded), redis_down (writes kept in memory), redis_catching_up.", []string{"state"}, nil)
	cacheFreeDesc     = prometheus.NewDesc("apmkit_cache_free_bytes", "Free space of the data dir's file system at the last measurement (-1: unknown).", nil, nil)
	cacheReserveDesc  = prometheus.NewDesc("apmkit_cache_reserve_bytes", "Free space the cache leaves: below it, cache writes are refused (min_free_mb plus badger's tables).", nil, nil)
	cacheRefusedDesc  = prometheus.NewDesc("apmkit_cache_writes_refused_total", "Cache writes refused, by reason: disk_full (free space below the reserve), capacity (capacity_mb, the memory state's bound, or Redis' maxmemory), redis_unavailable (Redis down and the fallback full).", []string{"reason"}, nil)
	redisErrorsDesc   = prometheus.NewDesc("apmkit_cache_redis_errors_total", "Redis calls that failed, by operation: get, set, delete, scan, ping, sweep.", []string{"op"}, nil)
	redisKeptDesc     = prometheus.NewDesc("apmkit_cache_redis_fallback_writes", "Writes kept in memory for Redis while it is unavailable.", nil, nil)
	redisKeptSizeDesc = prometheus.NewDesc("apmkit_cache_redis_fallback_bytes", "Memory of the writes kept for Redis (bound: redis_fallback_mb).", nil, nil)
	redisReplayDesc   = prometheus.NewDesc("apmkit_cache_redis_replayed_total", "Writes kept in memory then written to Redis once it answered (result written), or refused by it then (dropped).", []string{"result"}, nil)
)

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheSizeDesc, cacheStateDesc, cacheFreeDesc, cacheReserveDesc, cacheRefusedDesc,
		redisErrorsDesc, redisKeptDesc, redisKeptSizeDesc, redisReplayDesc} {
		ch <- d
	}
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.Stats()
	ch <- prometheus.MustNewConstMetric(cacheSizeDesc, prometheus.GaugeValue, float64(st.SizeBytes))
	for _, s := range cache.States() {
		v := 0.0
		if st.State == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(cacheStateDesc, prometheus.GaugeValue, v, string(s))
	}
	for _, r := range slices.Sorted(maps.Keys(st.Refused)) {
		ch <- prometheus.MustNewConstMetric(cacheRefusedDesc, prometheus.CounterValue, float64(st.Refused[r]), r)
	}
	if st.Redis != nil {
		collectRedis(ch, st.Redis)
		return
	}
	ch <- prometheus.MustNewConstMetric(cacheFreeDesc, prometheus.GaugeValue, float64(st.FreeBytes))
	ch <- prometheus.MustNewConstMetric(cacheReserveDesc, prometheus.GaugeValue, float64(st.ReserveBytes))
}

// collectRedis is the Redis backend's part of the cache's metrics.
func collectRedis(ch chan<- prometheus.Metric, st *cache.RedisStats) {
	for _, op := range slices.Sorted(maps.Keys(st.Errors)) {
		ch <- prometheus.MustNewConstMetric(redisErrorsDesc, prometheus.CounterValue, float64(st.Errors[op]), op)
	}
	ch <- prometheus.MustNewConstMetric(redisKeptDesc, prometheus.GaugeValue, float64(st.FallbackChanges))
	ch <- prometheus.MustNewConstMetric(redisKeptSizeDesc, prometheus.GaugeValue, float64(st.FallbackBytes))
	ch <- prometheus.MustNewConstMetric(redisReplayDesc, prometheus.CounterValue, float64(st.Replayed), "written")
	ch <- prometheus.MustNewConstMetric(redisReplayDesc, prometheus.CounterValue, float64(st.ReplayDropped), "dropped")
}
