// Package pipeline holds the processors between an input and the uploader: filters,
// samplers and tags, configured per input instance.
package pipeline

import (
	"github.com/apmkit/apmkit/point"
)

// Config is what an input instance's pipeline does.
type Config struct {
	// GlobalTags come from apmkit.conf; Tags from the input's [tags] table. Both are added
	// to every point that does not already carry the key: a point's own tag always wins,
	// then the input's tags, then the global ones.
	GlobalTags map[string]string
	Tags       map[string]string
}

// Configurer is implemented by input configs that configure their pipeline.
type Configurer interface {
	PipelineConfig() Config
}

// Pipeline processes the points of one input instance. It is safe for concurrent use.
type Pipeline struct {
	tags []point.Tag // input tags, then global tags not overridden by the input
}

// New builds a pipeline.
func New(cfg Config) *Pipeline {
	p := &Pipeline{}
	for k, v := range cfg.Tags {
		p.tags = append(p.tags, point.Tag{Key: k, Value: v})
	}
	for k, v := range cfg.GlobalTags {
		if _, dup := cfg.Tags[k]; !dup {
			p.tags = append(p.tags, point.Tag{Key: k, Value: v})
		}
	}
	return p
}

// Process returns the points to send, modified in place.
func (p *Pipeline) Process(cat point.Category, pts []*point.Point) []*point.Point {
	if len(p.tags) == 0 {
		return pts
	}
	for _, pt := range pts {
		for _, t := range p.tags {
			if _, has := pt.Tag(t.Key); !has {
				pt.SetTag(t.Key, t.Value)
			}
		}
	}
	return pts
}
