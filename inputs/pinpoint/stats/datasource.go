package stats

import (
	"strconv"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

const (
	dataSourceTagCap   = 8 // see dataSourcePoints
	dataSourceFieldCap = 2
)

// dataSourcePoints adds one pinpoint_datasource point per connection pool of the sample
// (Java only; the Go agent sends none), timestamped like the sample. pool_id (the agent's
// id of the pool) keeps two pools of one URL, database and type apart: without it they are
// one series and overwrite each other at every sample.
func (c *Converter) dataSourcePoints(slab *pointSlab, urls *urlMemo, agent *agentTags, s *pb.PAgentStat, ts int64, skipped *Skipped) {
	for _, ds := range s.GetDataSourceList().GetDataSource() {
		if ds == nil {
			skipped.add(NilEntry)
			continue
		}
		p := slab.newPoint(MeasurementDataSource, ts, dataSourceTagCap, dataSourceFieldCap)
		tags := appendTag(p.Tags, "agent_id", agent.agentID)
		tags = appendTag(tags, "agent_name", agent.agentName)
		tags = appendTag(tags, "database_name", ds.GetDatabaseName())
		tags = appendTag(tags, "host", agent.hostname)
		tags = appendTag(tags, "pool_id", strconv.Itoa(int(ds.GetId())))
		tags = appendTag(tags, "service", agent.service)
		if code := ds.GetServiceTypeCode(); code != 0 { // 0: not sent (no Pinpoint type has it)
			tags = appendTag(tags, "service_type", c.types.Type(code).Name)
		}
		p.Tags = appendTag(tags, "url", urls.stripCredentials(ds.GetUrl()))
		// A negative size is "unknown" (DBCP's maxTotal -1 means unlimited): absent.
		fields := appendCount(p.Fields, "ActiveConnectionSize", int64(ds.GetActiveConnectionSize()))
		p.Fields = appendCount(fields, "MaxConnectionSize", int64(ds.GetMaxConnectionSize()))
		if len(p.Fields) == 0 {
			skipped.add(NoValues)
			continue
		}
		slab.keep(p)
	}
}

// urlMemo remembers the last few stripped URLs of one message: a batch repeats the same
// pools in each of its samples, and stripping a URL that has credentials allocates. It
// lives for one Stat call, so the Converter stays free of mutable state.
type urlMemo struct {
	raw, clean [4]string
	next       int
}

func (m *urlMemo) stripCredentials(raw string) string {
	for i := range m.raw {
		if m.raw[i] == raw { // an unused slot holds "", and "" strips to ""
			return m.clean[i]
		}
	}
	clean := stripCredentials(raw)
	m.raw[m.next], m.clean[m.next] = raw, clean
	m.next = (m.next + 1) % len(m.raw)
	return clean
}
