// Package pipeline holds the processors between an input and the uploader, configured per
// input instance: close_resource, the samplers, keep_rare_resource, del_message and tags
// (DataKit's options).
//
// Tracing decisions are made per TRACE, not per span. When a processor that can drop traces
// is configured (sampling_rate below 1, the smart sampler, close_resource), a trace's spans
// wait in a decision buffer (decision.go) until DecisionWait after its first span, so the
// decision sees every span of the trace that arrived by then, from every agent; then the
// whole trace is kept or dropped, and spans that come later follow the remembered decision.
// With none configured, spans go straight on: nothing waits.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/span"
)

// Config is what an input instance's pipeline does. The zero value only adds tags.
type Config struct {
	// GlobalTags come from apmkit.conf; Tags from the input's [tags] table. Both are added
	// to every point (spans and metrics) that does not already carry the key: a point's
	// own tag always wins, then the input's tags, then the global ones.
	GlobalTags map[string]string
	Tags       map[string]string

	// CloseResource maps a service ("*" = every service) to regular expressions; a trace
	// whose root span (the entry span without a parent) is of that service and has a
	// matching resource is dropped whole.
	CloseResource map[string][]string
	// SamplingRate keeps a trace iff its fixed trace hash (traceHash) falls under the rate;
	// nil or 1 keeps everything. A trace with an error in any span is kept.
	SamplingRate *float64
	// KeepRareResource keeps a trace whole when one of its entry spans has a (service,
	// resource template) not seen within RareWindow.
	KeepRareResource bool
	// DelMessage drops the message field from every span.
	DelMessage bool
	// SmartSampler, when enabled, replaces SamplingRate (see smart.go).
	SmartSampler SmartSamplerConfig

	// DecisionWait is how long the spans of a trace wait for the rest of it, from its first
	// span, when a sampler or filter is configured. 0 = DefaultDecisionWait.
	DecisionWait time.Duration
	// DecisionBufferBytes bounds the memory of the spans waiting for a decision
	// (span.Span.Size plus a per-trace overhead); when it is full the oldest traces are
	// decided early. 0 = DefaultDecisionBufferBytes.
	DecisionBufferBytes int64
}

// Defaults of the decision buffer.
const (
	DefaultDecisionWait        = 5 * time.Second
	DefaultDecisionBufferBytes = 32 << 20
)

// Configurer is implemented by input configs that configure their pipeline.
type Configurer interface {
	PipelineConfig() Config
}

// Options are the pipeline's environment (tests replace the clock and the CPU meter).
type Options struct {
	Now     func() time.Time
	CPU     CPUMeter
	Metrics prometheus.Registerer
	// Emit hands a kept span on: the agent sets the uploader's FeedSpan. It is called from
	// ProcessSpan (spans that need not wait, and traces decided early because the buffer is
	// full), from the background loop that Start runs (traces whose wait is over) and from
	// Stop (every trace still waiting). Nil counts every kept span as an emit error.
	Emit func(ctx context.Context, s *span.Span) error
	// Decisions, when replicas share a store, is where each trace's first decision is
	// recorded for the other replicas to follow (shared.go). Nil: this process decides alone.
	Decisions cache.Shared
}

// errNoEmit is what a pipeline without Options.Emit answers for a kept span.
var errNoEmit = errors.New("pipeline: no Emit configured")

// Pipeline processes the points of one input instance. It is safe for concurrent use.
type Pipeline struct {
	tags    []point.Tag // input tags, then global tags the input does not override
	closed  map[string][]*regexp.Regexp
	rate    *sampleRate
	delMsg  bool
	rare    *rareResources
	smart   *smartSampler
	metrics *metrics
	now     func() time.Time
	emit    func(ctx context.Context, s *span.Span) error
	shared  cache.Shared // Options.Decisions
	// buf holds traces waiting for their decision; nil when nothing can drop a trace.
	buf *decisionBuffer
}

// New builds a pipeline; invalid regular expressions are errors naming them.
func New(cfg Config, opts Options) (*Pipeline, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pipeline{delMsg: cfg.DelMessage, closed: map[string][]*regexp.Regexp{}, now: opts.Now, emit: opts.Emit, shared: opts.Decisions}
	if p.emit == nil {
		p.emit = func(context.Context, *span.Span) error { return errNoEmit }
	}
	for k, v := range cfg.Tags {
		p.tags = append(p.tags, point.Tag{Key: k, Value: v})
	}
	for k, v := range cfg.GlobalTags {
		if _, dup := cfg.Tags[k]; !dup {
			p.tags = append(p.tags, point.Tag{Key: k, Value: v})
		}
	}
	// Sorted: spans merge them into their own sorted tags as they are encoded.
	slices.SortFunc(p.tags, func(a, b point.Tag) int { return strings.Compare(a.Key, b.Key) })
	probe := &point.Point{Name: "tags", Tags: p.tags, Fields: []point.Field{point.Int("x", 1)}}
	if err := probe.Validate(); err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	for svc, exprs := range cfg.CloseResource {
		for _, e := range exprs {
			re, err := regexp.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("close_resource: %q: invalid regular expression %q: %v", svc, e, err)
			}
			p.closed[svc] = append(p.closed[svc], re)
		}
	}
	if r := cfg.SamplingRate; r != nil {
		if *r < 0 || *r > 1 {
			return nil, fmt.Errorf("sampling_rate: %v must be within 0..1", *r)
		}
		if *r < 1 {
			p.rate = newSampleRate(*r)
		}
	}
	if cfg.DecisionWait < 0 || cfg.DecisionBufferBytes < 0 {
		return nil, fmt.Errorf("decision_wait %s and the decision buffer %d bytes must not be negative", cfg.DecisionWait, cfg.DecisionBufferBytes)
	}
	var err error
	if p.metrics, err = newMetrics(opts.Metrics, cfg.SmartSampler.Enabled); err != nil {
		return nil, err
	}
	if cfg.KeepRareResource {
		p.rare = newRareResources(opts.Now, p.metrics)
	}
	if cfg.SmartSampler.Enabled {
		p.smart = newSmartSampler(cfg.SmartSampler, opts.Now, opts.CPU, p.metrics)
		p.rate = nil // replaced
	}
	if p.rate != nil || p.smart != nil || len(p.closed) > 0 {
		p.buf = newDecisionBuffer(cfg.DecisionWait, cfg.DecisionBufferBytes, opts.Now)
		p.metrics.pendingCapacity.Set(float64(p.buf.maxBytes))
	}
	return p, nil
}

// Process adds the tags to metric points (spans go through ProcessSpan), in place.
func (p *Pipeline) Process(pts []*point.Point) []*point.Point {
	p.addTags(pts)
	return pts
}

func (p *Pipeline) addTags(pts []*point.Point) {
	if len(p.tags) == 0 {
		return
	}
	for _, pt := range pts {
		for _, t := range p.tags {
			if _, has := pt.Tag(t.Key); !has {
				pt.SetTag(t.Key, t.Value)
			}
		}
	}
}
