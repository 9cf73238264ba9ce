package stats

import (
	"math"
	"strconv"
	"time"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
	"github.com/apmkit/apmkit/point"
)

// The measurements this package writes (category metric), as docs/SCHEMA.md names them.
const (
	MeasurementJVM        = "pinpoint_jvm"
	MeasurementDataSource = "pinpoint_datasource"
	MeasurementURI        = "pinpoint_uri"
	MeasurementAgent      = "pinpoint_agent"
)

// Category is the point category of everything this package produces.
const Category = point.Metric

// Converter turns Pinpoint stats and agent info into points. It holds no mutable state, so
// one Converter serves every stream concurrently.
type Converter struct {
	store *meta.Store        // persisted agent info; nil: tags come from the headers only
	types *servicetype.Table // names serviceType codes; nil reads as the built-in table
}

// NewConverter returns a converter that tags stats with the agent info persisted in store
// and names service types with types. Either may be nil: without a store the points carry
// only what the call headers say; a nil table is the built-in one.
func NewConverter(store *meta.Store, types *servicetype.Table) *Converter {
	return &Converter{store: store, types: types}
}

// Stat converts one PStatMessage from sender into points. Content it cannot convert is
// left out and counted in the returned Skipped, never a panic; the rest of the message is
// still converted.
func (c *Converter) Stat(sender *meta.Sender, msg *pb.PStatMessage) ([]*point.Point, Skipped) {
	var skipped Skipped
	switch content := msg.GetField().(type) {
	case *pb.PStatMessage_AgentStatBatch:
		agent := c.agentTags(sender)
		return c.samples(&agent, content.AgentStatBatch.GetAgentStat(), &skipped), skipped
	case *pb.PStatMessage_AgentStat:
		agent := c.agentTags(sender)
		return c.samples(&agent, []*pb.PAgentStat{content.AgentStat}, &skipped), skipped
	case *pb.PStatMessage_AgentUriStat:
		agent := c.agentTags(sender)
		return c.uriStats(&agent, content.AgentUriStat.GetEachUriStat(), &skipped), skipped
	case *pb.PStatMessage_ProfilerMetric:
		skipped.add(ProfilerMetric)
	default:
		skipped.add(UnknownMessage)
	}
	return nil, skipped
}

// agentTags is what the points of one agent run are tagged with. Values are raw; the
// append helpers clean them.
type agentTags struct {
	agentID, agentName, service string
	// From the persisted PAgentInfo; empty when apmkit never saw it.
	hostname, ip, pid, ports, agentVersion, container string
	gcType                                            string // jvmInfo.gcType: fallback for samples without gc
}

// agentTags reads the agent run's persisted PAgentInfo, so stats that arrive after an apmkit
// restart (agents never re-register) are tagged like before it. The headers name the run
// and always win for agent_id, agent_name and service: they come with every call.
func (c *Converter) agentTags(sender *meta.Sender) agentTags {
	if sender == nil {
		return agentTags{}
	}
	tags := agentTags{agentID: sender.AgentID, agentName: sender.AgentName, service: sender.ApplicationName}
	if c.store == nil {
		return tags
	}
	rec, ok := c.store.Agent(sender.AgentKey)
	if !ok || rec.Info == nil {
		return tags
	}
	info := rec.Info
	tags.hostname = info.GetHostname()
	tags.ip = info.GetIp()
	tags.ports = info.GetPorts()
	tags.agentVersion = info.GetAgentVersion()
	tags.container = strconv.FormatBool(info.GetContainer())
	if pid := info.GetPid(); pid > 0 {
		tags.pid = strconv.Itoa(int(pid))
	}
	if jvm := info.GetJvmInfo(); jvm != nil {
		tags.gcType = gcTypeName(jvm.GetGcType())
	}
	return tags
}

// appendTag appends key=value when the cleaned value is not empty (line protocol has no
// empty tag values). Callers append keys in sorted order, as point.Point requires, so no
// per-tag search or insertion is needed.
func appendTag(tags []point.Tag, key, value string) []point.Tag {
	if value = point.CleanTagValue(value); value == "" {
		return tags
	}
	return append(tags, point.Tag{Key: key, Value: value})
}

// gcTypeName is the PJvmGcType name without its JVM_GC_TYPE_ prefix (CMS, G1, ...). A code
// a newer agent added gets UNKNOWN_<code>, like unknown service types.
func gcTypeName(t pb.PJvmGcType) string {
	if name, ok := pb.PJvmGcType_name[int32(t)]; ok {
		return name[len("JVM_GC_TYPE_"):]
	}
	return "UNKNOWN_" + strconv.Itoa(int(t))
}

// maxUnixMillis is the last millisecond whose nanoseconds fit in an int64 (year 2262).
const maxUnixMillis = math.MaxInt64 / int64(time.Millisecond)

// unixNanos converts a Pinpoint timestamp (epoch ms) to point time, or reports it unusable.
func unixNanos(ms int64) (int64, bool) {
	if ms <= 0 || ms > maxUnixMillis {
		return 0, false
	}
	return ms * int64(time.Millisecond), true
}

// pointSlab allocates the points of one message together: one allocation for the points,
// one for all their tags and one for all their fields, instead of three per point. Each
// point gets a full-capacity-limited window of the shared arrays, so a later SetTag or
// AddField that grows a point reallocates that point alone and never touches a neighbour.
type pointSlab struct {
	points []point.Point
	tags   []point.Tag
	fields []point.Field
	out    []*point.Point
}

func newPointSlab(points, tags, fields int) pointSlab {
	return pointSlab{
		points: make([]point.Point, points),
		tags:   make([]point.Tag, tags),
		fields: make([]point.Field, fields),
		out:    make([]*point.Point, 0, points),
	}
}

// newPoint returns an empty point with room for tagCap tags and fieldCap fields. If the
// slab was sized too small it falls back to separate allocations rather than fail.
func (s *pointSlab) newPoint(name string, unixNano int64, tagCap, fieldCap int) *point.Point {
	var p *point.Point
	if len(s.points) > 0 {
		p, s.points = &s.points[0], s.points[1:]
	} else {
		p = new(point.Point)
	}
	p.Name, p.Time = name, unixNano
	p.Tags = carve(&s.tags, tagCap)
	p.Fields = carve(&s.fields, fieldCap)
	return p
}

// keep adds a finished point to the result.
func (s *pointSlab) keep(p *point.Point) { s.out = append(s.out, p) }

// carve cuts an empty slice with capacity n off the front of *pool.
func carve[T any](pool *[]T, n int) []T {
	if len(*pool) < n {
		return make([]T, 0, n)
	}
	part := (*pool)[:0:n]
	*pool = (*pool)[n:]
	return part
}
