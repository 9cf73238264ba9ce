package pipeline

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// RareWindow is how long a (service, resource) stays "seen" for keep_rare_resource.
const RareWindow = time.Hour

// rareMaxEntries bounds the resources remembered; the least recently seen go first.
const rareMaxEntries = 50_000

// rareResources remembers when each (service, resource) was last seen, in an LRU bounded
// in entries; the stored time makes the window exact under the pipeline's clock, which
// tests replace. (golang-lru's expirable LRU would also drop entries after the window, but
// it starts a goroutine per instance that can never be stopped.)
type rareResources struct {
	now     func() time.Time
	seen    *lru.Cache[string, time.Time]
	metrics *metrics
}

func newRareResources(now func() time.Time, m *metrics) *rareResources {
	seen, _ := lru.New[string, time.Time](rareMaxEntries)
	return &rareResources{now: now, seen: seen, metrics: m}
}

// firstSeen records a sighting and reports whether the resource was not seen within the
// window before it.
func (r *rareResources) firstSeen(service, resource string) bool {
	key := service + "\x00" + resource
	now := r.now()
	last, ok := r.seen.Get(key)
	r.seen.Add(key, now)
	r.metrics.rareEntries.Set(float64(r.seen.Len()))
	return !ok || now.Sub(last) >= RareWindow
}
