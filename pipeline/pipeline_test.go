package pipeline

import (
	"testing"

	"github.com/apmkit/apmkit/point"
)

func TestTagsNeverOverrideAPointsOwnTag(t *testing.T) {
	p := New(Config{
		GlobalTags: map[string]string{"env": "global", "region": "eu"},
		Tags:       map[string]string{"env": "input", "team": "a", "service": "input-svc"},
	})
	pt := point.New("pinpoint", 1)
	pt.SetTag("service", "frontend")
	pt.AddField(point.Int("v", 1))
	p.Process(point.Tracing, []*point.Point{pt})
	want := map[string]string{"env": "input", "region": "eu", "team": "a", "service": "frontend"}
	for k, v := range want {
		if got, _ := pt.Tag(k); got != v {
			t.Errorf("tag %s = %q, want %q", k, got, v)
		}
	}
	if len(pt.Tags) != len(want) {
		t.Errorf("tags %v", pt.Tags)
	}
}
