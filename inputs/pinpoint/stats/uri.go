package stats

import (
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// uriBuckets is the number of PUriHistogram buckets every known agent sends
// (PAgentUriStat.bucketVersion 0): <100, 100-300, 300-500, 500-1000, 1000-3000, 3000-5000,
// 5000-8000 and >=8000 ms.
const uriBuckets = 8

// The bucket field names of pinpoint_uri, in bucket order; the failed histogram's carry the
// failed_ prefix.
var (
	uriBucketFields = [uriBuckets]string{
		"bucket_lt_100ms", "bucket_100_300ms", "bucket_300_500ms", "bucket_500_1000ms",
		"bucket_1000_3000ms", "bucket_3000_5000ms", "bucket_5000_8000ms", "bucket_ge_8000ms",
	}
	uriFailedBucketFields = [uriBuckets]string{
		"failed_bucket_lt_100ms", "failed_bucket_100_300ms", "failed_bucket_300_500ms", "failed_bucket_500_1000ms",
		"failed_bucket_1000_3000ms", "failed_bucket_3000_5000ms", "failed_bucket_5000_8000ms", "failed_bucket_ge_8000ms",
	}
)

const (
	uriTagCap   = 5                // agent_id, agent_name, host, service, uri
	uriFieldCap = 6 + 2*uriBuckets // counts, elapsed and max for total and failed, and the buckets
)

// uriStats converts each PEachUriStat into one pinpoint_uri point, timestamped with its
// 30-s window start.
func (c *Converter) uriStats(agent *agentTags, entries []*pb.PEachUriStat, skipped *Skipped) []*point.Point {
	slab := newPointSlab(len(entries), len(entries)*uriTagCap, len(entries)*uriFieldCap)
	for _, e := range entries {
		if reason, ok := uriPoint(&slab, agent, e); !ok {
			skipped.add(reason)
		}
	}
	return slab.out
}

// uriPoint adds the entry's point, or reports why it cannot.
func uriPoint(slab *pointSlab, agent *agentTags, e *pb.PEachUriStat) (Reason, bool) {
	if e == nil {
		return NilEntry, false
	}
	ts, ok := unixNanos(e.GetTimestamp())
	if !ok {
		return BadTimestamp, false
	}
	uri := point.CleanTagValue(e.GetUri())
	if uri == "" {
		return NoURI, false
	}
	if e.GetTotalHistogram() == nil {
		return URIHistogram, false
	}
	total, okTotal := readURIHistogram(e.GetTotalHistogram())
	// A missing failed histogram means nothing failed: both Java and Go send an empty one
	// (no buckets) in that case, and absent reads the same.
	failed, okFailed := readURIHistogram(e.GetFailedHistogram())
	if !okTotal || !okFailed {
		return URIHistogram, false
	}
	p := slab.newPoint(MeasurementURI, ts, uriTagCap, uriFieldCap)
	tags := appendTag(p.Tags, "agent_id", agent.agentID)
	tags = appendTag(tags, "agent_name", agent.agentName)
	tags = appendTag(tags, "host", agent.hostname)
	tags = appendTag(tags, "service", agent.service)
	p.Tags = append(tags, point.Tag{Key: "uri", Value: uri})
	p.Fields = uriFields(p.Fields, &total, &failed)
	slab.keep(p)
	return 0, true
}

// uriHistogram is a validated PUriHistogram.
type uriHistogram struct {
	buckets      [uriBuckets]int64
	count        int64 // sum of the buckets: the number of requests
	elapsedMs    int64 // PUriHistogram.total: sum of the requests' elapsed ms
	maxElapsedMs int64
}

// readURIHistogram validates h. No buckets is a valid empty histogram (what agents send
// when the window had no such request); any other count than 8, or a negative number, is
// malformed.
func readURIHistogram(h *pb.PUriHistogram) (uriHistogram, bool) {
	var out uriHistogram
	buckets := h.GetHistogram()
	if len(buckets) != 0 && len(buckets) != uriBuckets {
		return out, false
	}
	for i, n := range buckets {
		if n < 0 {
			return out, false
		}
		out.buckets[i] = int64(n)
		out.count += int64(n)
	}
	out.elapsedMs, out.maxElapsedMs = h.GetTotal(), h.GetMax()
	if out.elapsedMs < 0 || out.maxElapsedMs < 0 {
		return out, false
	}
	return out, true
}

func uriFields(f []point.Field, total, failed *uriHistogram) []point.Field {
	f = append(f,
		point.Int("total_count", total.count),
		point.Int("failed_count", failed.count),
		point.Int("total_elapsed_ms", total.elapsedMs),
		point.Int("max_ms", total.maxElapsedMs),
		point.Int("failed_elapsed_ms", failed.elapsedMs),
		point.Int("failed_max_ms", failed.maxElapsedMs),
	)
	for i, n := range total.buckets {
		f = append(f, point.Int(uriBucketFields[i], n))
	}
	for i, n := range failed.buckets {
		f = append(f, point.Int(uriFailedBucketFields[i], n))
	}
	return f
}
