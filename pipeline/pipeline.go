// Package pipeline holds the processors between an input and the uploader, configured per
// input instance: close_resource, the samplers, keep_rare_resource, del_message and tags
// (DataKit's options). Tracing decisions are made per TRACE, not per batch: every span of
// a trace gets the same answer, also when parts of it arrive later or on another apmkit
// replica.
package pipeline

import (
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/point"
)

// Config is what an input instance's pipeline does. The zero value only adds tags.
type Config struct {
	// GlobalTags come from apmkit.conf; Tags from the input's [tags] table. Both are added
	// to every point (spans and metrics) that does not already carry the key: a point's
	// own tag always wins, then the input's tags, then the global ones.
	GlobalTags map[string]string
	Tags       map[string]string

	// CloseResource maps a service ("*" = every service) to regular expressions; a
	// Pinpoint span whose entry resource matches is dropped with its events and chunks.
	CloseResource map[string][]string
	// SamplingRate keeps a trace iff a fixed hash of its trace_id falls under the rate;
	// nil keeps everything. Spans of a Pinpoint span with an error are always kept.
	SamplingRate *float64
	// KeepRareResource always keeps a (service, resource) not seen within RareWindow.
	KeepRareResource bool
	// DelMessage drops the message field from every span.
	DelMessage bool
	// SmartSampler, when enabled, replaces SamplingRate (see smart.go).
	SmartSampler SmartSamplerConfig
}

// Configurer is implemented by input configs that configure their pipeline.
type Configurer interface {
	PipelineConfig() Config
}

// Options are the pipeline's environment (tests replace the clock and the CPU meter).
type Options struct {
	Now     func() time.Time
	CPU     CPUMeter
	Metrics prometheus.Registerer
}

// Field and tag names the tracing processors read (OUTPUT-SCHEMA.md).
const (
	fieldTraceID  = "trace_id"
	fieldResource = "resource"
	fieldDuration = "duration"
	fieldMessage  = "message"
	tagService    = "service"
	tagSpanType   = "span_type"
	tagStatus     = "status"
	spanTypeEntry = "entry"
	statusError   = "error"
)

// Pipeline processes the points of one input instance. It is safe for concurrent use.
type Pipeline struct {
	tags    []point.Tag // input tags, then global tags the input does not override
	closed  map[string][]*regexp.Regexp
	rate    *float64
	delMsg  bool
	memory  *traceMemory
	rare    *rareResources
	smart   *smartSampler
	metrics *metrics
}

// New builds a pipeline; invalid regular expressions are errors naming them.
func New(cfg Config, opts Options) (*Pipeline, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pipeline{rate: cfg.SamplingRate, delMsg: cfg.DelMessage, closed: map[string][]*regexp.Regexp{}}
	for k, v := range cfg.Tags {
		p.tags = append(p.tags, point.Tag{Key: k, Value: v})
	}
	for k, v := range cfg.GlobalTags {
		if _, dup := cfg.Tags[k]; !dup {
			p.tags = append(p.tags, point.Tag{Key: k, Value: v})
		}
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
	var err error
	if p.metrics, err = newMetrics(opts.Metrics); err != nil {
		return nil, err
	}
	p.memory = newTraceMemory(opts.Now)
	if cfg.KeepRareResource {
		p.rare = newRareResources(opts.Now, p.metrics)
	}
	if cfg.SmartSampler.Enabled {
		p.smart = newSmartSampler(cfg.SmartSampler, opts.Now, opts.CPU)
	}
	return p, nil
}

// Process returns the points to send; kept points are modified in place.
func (p *Pipeline) Process(cat point.Category, pts []*point.Point) []*point.Point {
	if cat == point.Tracing {
		pts = p.processTraces(pts)
	}
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
