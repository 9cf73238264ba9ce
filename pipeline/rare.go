package pipeline

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// RareWindow is how long a (service, resource) stays "seen" for keep_rare_resource.
const RareWindow = time.Hour

// rareMaxEntries bounds the resources remembered; the least recently seen go first.
const rareMaxEntries = 50_000

// rareResources remembers when each (service, resource) was last seen. The expirable LRU
// bounds memory (entries vanish after the window); the stored time makes the window exact
// under the pipeline's clock, which tests replace.
type rareResources struct {
	now     func() time.Time
	seen    *expirable.LRU[string, time.Time]
	metrics *metrics
}

func newRareResources(now func() time.Time, m *metrics) *rareResources {
	return &rareResources{now: now, seen: expirable.NewLRU[string, time.Time](rareMaxEntries, nil, RareWindow), metrics: m}
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
