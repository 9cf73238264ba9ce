package stats

import (
	"slices"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// Two agents used throughout: a Java Tomcat service and the Go backend of the recordings.
var (
	javaSender = &meta.Sender{
		AgentKey:        meta.AgentKey{AgentID: "order-api-01", StartTime: 1700000000000},
		AgentName:       "order-api-01",
		ApplicationName: "order-api",
		ServiceType:     1010,
	}
	goSender = &meta.Sender{
		AgentKey:        meta.AgentKey{AgentID: "backend-01", StartTime: 1795417161952},
		AgentName:       "backend-01",
		ApplicationName: "backend",
		ServiceType:     1800,
	}
)

func javaAgentInfo() *pb.PAgentInfo {
	return &pb.PAgentInfo{
		Hostname: "web-1", Ip: "10.0.0.5", Ports: "8080", ServiceType: 1010, Pid: 4242,
		AgentVersion: "3.0.1", VmVersion: "17.0.9",
		ServerMetaData: &pb.PServerMetaData{ServerInfo: "Apache Tomcat/9.0.80"},
		JvmInfo:        &pb.PJvmInfo{Version: 17, VmVersion: "17.0.9", GcType: pb.PJvmGcType_JVM_GC_TYPE_G1},
	}
}

// goAgentInfo is what pinpoint-go-agent 1.5.0 sent in the recordings (go-agent-async-heavy).
func goAgentInfo() *pb.PAgentInfo {
	return &pb.PAgentInfo{
		Hostname: "vm", Ip: "192.0.2.2", ServiceType: 1800, Pid: 4480,
		AgentVersion: "1.5.0", VmVersion: "go1.26.8", Container: true,
		ServerMetaData: &pb.PServerMetaData{ServerInfo: "Go Application", VmArg: []string{"-listen", "127.0.0.1:18081"}},
		JvmInfo:        &pb.PJvmInfo{VmVersion: "go1.26.8(152)", GcType: pb.PJvmGcType_JVM_GC_TYPE_CMS},
	}
}

// newMemoryStore returns a meta.Store over an in-memory cache, closed with the test.
func newMemoryStore(t testing.TB) *meta.Store {
	t.Helper()
	db := cache.NewMemory(cache.Config{})
	t.Cleanup(func() { db.Close() })
	store, err := meta.NewStore(db, meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// converterKnowing returns a converter whose store holds the agent info of each sender.
func converterKnowing(t testing.TB, agents map[*meta.Sender]*pb.PAgentInfo) *Converter {
	t.Helper()
	store := newMemoryStore(t)
	for sender, info := range agents {
		if err := store.PutAgent(*sender, info); err != nil {
			t.Fatal(err)
		}
	}
	return NewConverter(store, nil)
}

// canonical renders points as line protocol with tags and fields sorted by key, one line
// each, so hand-written expectations need not follow the converter's field order while
// names, types (42i vs 42), values and timestamps must still match exactly.
func canonical(t *testing.T, pts []*point.Point) string {
	t.Helper()
	var b []byte
	for _, p := range pts {
		c := p.Clone()
		slices.SortFunc(c.Tags, func(a, b point.Tag) int { return strings.Compare(a.Key, b.Key) })
		slices.SortFunc(c.Fields, func(a, b point.Field) int { return strings.Compare(a.Key, b.Key) })
		var err error
		if b, err = point.AppendLine(b, c); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	return string(b)
}

// parseExpected parses hand-written line protocol (one point per line; blank lines and
// surrounding indentation are ignored).
func parseExpected(t *testing.T, text string) []*point.Point {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	pts, err := point.Parse([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatalf("expected text: %v", err)
	}
	return pts
}

// assertLines checks that got is exactly the expected text, and that every point is valid
// as produced (sorted tags, no duplicate fields), not only after canonical sorting.
func assertLines(t *testing.T, got []*point.Point, want string) {
	t.Helper()
	for _, p := range got {
		if err := p.Validate(); err != nil {
			t.Errorf("invalid point: %v", err)
		}
	}
	g, w := canonical(t, got), canonical(t, parseExpected(t, want))
	if g != w {
		t.Errorf("points differ\n got:\n%s\nwant:\n%s", g, w)
	}
}

func assertNothingSkipped(t *testing.T, s Skipped) {
	t.Helper()
	if s.Total() != 0 {
		t.Errorf("skipped %s, want nothing", s)
	}
}

func batchMessage(samples ...*pb.PAgentStat) *pb.PStatMessage {
	return &pb.PStatMessage{Field: &pb.PStatMessage_AgentStatBatch{AgentStatBatch: &pb.PAgentStatBatch{AgentStat: samples}}}
}

func uriMessage(entries ...*pb.PEachUriStat) *pb.PStatMessage {
	return &pb.PStatMessage{Field: &pb.PStatMessage_AgentUriStat{AgentUriStat: &pb.PAgentUriStat{EachUriStat: entries}}}
}

func buckets(counts ...int32) []int32 { return counts }

// goURIEntry is one recorded URI entry of the Go backend.
func goURIEntry() *pb.PEachUriStat {
	return &pb.PEachUriStat{Uri: "/api/users", Timestamp: 1795417140000,
		TotalHistogram:  &pb.PUriHistogram{Total: 73, Max: 18, Histogram: buckets(72, 0, 0, 0, 0, 0, 0, 0)},
		FailedHistogram: &pb.PUriHistogram{}}
}
