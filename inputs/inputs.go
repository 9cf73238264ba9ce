// Package inputs defines what an input is, what the agent gives it (Host), and the registry
// that input packages add themselves to from init. The registry is the only package-level
// mutable state in apmkit.
package inputs

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// Input is one running instance of an input plugin.
type Input interface {
	// Start listens synchronously (so a bad address fails apmkit's start) and serves in
	// goroutines. ctx is for the start itself, not the input's lifetime.
	Start(ctx context.Context, host Host) error
	// Stop is idempotent and safe before Start; it flushes what the input holds and waits
	// for its goroutines, giving up when ctx ends.
	Stop(ctx context.Context) error
}

// StatsReporter is implemented by inputs that show their state in /v1/stats.
type StatsReporter interface {
	Stats() any
}

// Host is what the agent gives an input.
type Host interface {
	// Feed hands points to the input's pipeline and the uploader. It may block briefly
	// when queues are full and returns an error when points had to be dropped.
	Feed(ctx context.Context, cat point.Category, pts []*point.Point) error
	// FeedSpan hands one span (category tracing) to the pipeline, which decides on it as
	// a whole, and the uploader; the span is the host's from then on. Like Feed it may
	// block briefly and returns an error when the span had to be dropped.
	FeedSpan(ctx context.Context, s *span.Span) error
	// Store returns a namespace of the agent's cache for this input instance alone: the
	// agent scopes the name to the instance's alias (see Aliaser), so two instances never
	// see each other's keys.
	Store(namespace string) (cache.Store, error)
	Logger() *slog.Logger
	// Metrics registers the input's self-metrics; labels input and instance are added.
	Metrics() prometheus.Registerer
	// DataDir is apmkit's data folder (for inputs that keep their own files).
	DataDir() string
	// Hostname is apmkit's host name (after the config override).
	Hostname() string
}

// Config is an input instance's configuration. The loader decodes TOML over the defaults
// that Plugin.NewConfig returns, applies ENV_INPUT_<NAME>_<OPTION> variables (fields tagged
// `env:"OPTION"`), then calls Validate. Fields carry `toml` and `doc` tags: the sample config
// and the option docs are generated from them.
type Config interface {
	Validate() error
}

// Listener is implemented by the configs of inputs that listen on network addresses:
// option key -> host:port (empty ones left out). The config loader refuses two instances
// on the same address, which would otherwise fail only at start ("address already in use").
type Listener interface {
	ListenAddresses() map[string]string
}

// Aliaser is implemented by the configs of inputs that keep state. InstanceAlias is the instance's
// stable identity among its plugin's instances (Telegraf's alias option, or a default such
// as its listen address): the agent keys the instance's cache namespaces, log lines and
// /v1/stats by it, so the instance finds its state again after a restart or a reordering
// of the config, and never another instance's. The config loader refuses two instances of
// one plugin with the same alias. Instances whose config has no alias are told apart by
// their position.
type Aliaser interface {
	InstanceAlias() string
}

// Plugin is a registered input kind.
type Plugin struct {
	Name string
	// Doc is a short description; it heads the sample config.
	Doc string
	// NewConfig returns a config holding the defaults (which the sample shows).
	NewConfig func() Config
	// New builds an input from a validated config.
	New func(cfg Config) (Input, error)
}

type registry struct {
	mu      sync.RWMutex
	plugins map[string]Plugin
}

// all is the input registry, filled by input packages' init functions.
var all = &registry{plugins: map[string]Plugin{}}

// Add registers a plugin; it panics on a duplicate or incomplete plugin, since that is a
// programming error found at start-up.
func Add(p Plugin) {
	if p.Name == "" || p.NewConfig == nil || p.New == nil {
		panic(fmt.Sprintf("inputs: incomplete plugin %q", p.Name))
	}
	all.mu.Lock()
	defer all.mu.Unlock()
	if _, dup := all.plugins[p.Name]; dup {
		panic(fmt.Sprintf("inputs: duplicate plugin %q", p.Name))
	}
	all.plugins[p.Name] = p
}

// Get returns a registered plugin.
func Get(name string) (Plugin, bool) {
	all.mu.RLock()
	defer all.mu.RUnlock()
	p, ok := all.plugins[name]
	return p, ok
}

// Names returns the registered plugin names, sorted.
func Names() []string {
	all.mu.RLock()
	defer all.mu.RUnlock()
	names := make([]string, 0, len(all.plugins))
	for n := range all.plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
