package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apmkit/apmkit/inputs/inputstest"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/inputs/pinpoint/stats"
	"github.com/apmkit/apmkit/inputs/pinpoint/trace"
	"github.com/apmkit/apmkit/point"
)

// measurementSchema is what apmkit wrote under one measurement.
type measurementSchema struct {
	tags, fields map[string]bool
	values       map[string]map[string]bool // tag -> values seen
	kinds        map[string]point.Kind      // field -> the kind written
}

type schema map[string]*measurementSchema

func (s schema) add(p *point.Point) {
	m := s[p.Name]
	if m == nil {
		m = &measurementSchema{tags: map[string]bool{}, fields: map[string]bool{}, values: map[string]map[string]bool{}, kinds: map[string]point.Kind{}}
		s[p.Name] = m
	}
	for _, t := range p.Tags {
		m.tags[t.Key] = true
		if m.values[t.Key] == nil {
			m.values[t.Key] = map[string]bool{}
		}
		if len(m.values[t.Key]) < 100 { // enumerations are small; ids are not needed
			m.values[t.Key][t.Value] = true
		}
	}
	for _, f := range p.Fields {
		m.fields[f.Key] = true
		m.kinds[f.Key] = f.Kind()
	}
}

var (
	writtenOnce sync.Once
	written     schema
	writtenErr  string
)

// writtenSchema is what the real Pinpoint input writes for the recorded agents: every
// recording replayed over gRPC into a running input (so spans go through the real
// assembler and converter), plus one stat message with every sub-message present through
// the real stats converter, for the JVM fields the recorded Go agents never send.
func writtenSchema(t *testing.T) schema {
	t.Helper()
	writtenOnce.Do(func() { written, writtenErr = collectWritten(t) })
	if writtenErr != "" {
		t.Fatal(writtenErr)
	}
	return written
}

func collectWritten(t *testing.T) (schema, string) {
	recs, err := replay.All()
	if err != nil {
		return nil, err.Error()
	}
	// Not t.TempDir: this runs once for several tests and must outlive the first.
	dir, err := os.MkdirTemp("", "apmkit-deploy-")
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(dir)
	h := inputstest.New(t, dir)
	cfg := pinpoint.DefaultConfig()
	cfg.Address, cfg.StatAddress, cfg.SpanAddress = "127.0.0.1:0", "", ""
	if err := cfg.Validate(); err != nil {
		return nil, err.Error()
	}
	in := pinpoint.New(cfg)
	if err := in.Start(context.Background(), h); err != nil {
		return nil, err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, rec := range recs {
		res, err := rec.Replay(ctx, replay.Targets{Agent: in.Addrs()[0]})
		if err != nil {
			return nil, err.Error()
		}
		if len(res.Failed) > 0 {
			return nil, rec.Name + ": " + res.Failed[0]
		}
	}
	// Stop flushes what the assembler still holds.
	if err := in.Stop(ctx); err != nil {
		return nil, err.Error()
	}
	s := schema{}
	for _, cat := range []point.Category{point.Metric, point.Tracing} {
		for _, p := range h.Points(cat) {
			s.add(p)
		}
	}
	h.Close()

	full := &pb.PAgentStat{}
	fillMessage(full.ProtoReflect(), 0)
	full.Timestamp = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).UnixMilli()
	sender := &meta.Sender{AgentKey: meta.AgentKey{AgentID: "a", StartTime: 1}, AgentName: "a", ApplicationName: "app"}
	pts, _ := stats.NewConverter(nil, nil).Stat(sender, &pb.PStatMessage{Field: &pb.PStatMessage_AgentStatBatch{
		AgentStatBatch: &pb.PAgentStatBatch{AgentStat: []*pb.PAgentStat{full}},
	}})
	for _, p := range pts {
		s.add(p)
	}
	return s, ""
}

// fillMessage sets every field of m to a plausible non-zero value, sub-messages included,
// so a converter writes every field it can derive.
func fillMessage(m protoreflect.Message, depth int) {
	if depth > 5 {
		return
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() && fd.Index() != fd.ContainingOneof().Fields().Get(0).Index() {
			continue // one member per oneof
		}
		switch {
		case fd.IsMap():
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range 4 { // four: the active-trace histogram's buckets
				if fd.Kind() == protoreflect.MessageKind {
					fillMessage(list.AppendMutable().Message(), depth+1)
				} else {
					list.Append(scalar(fd))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			fillMessage(m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, scalar(fd))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(0.5)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("jdbc:mysql://db:3306/shop")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{1})
	}
	panic("unhandled kind " + fd.Kind().String())
}

// documented is what docs/SCHEMA.md promises for a measurement: the names in
// backticks and in tables of its section, and per tag the values its table row lists.
type documented struct {
	names  map[string]bool
	values map[string]map[string]bool
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	schemaWord = regexp.MustCompile(`\b[A-Za-z]+(?:_[A-Za-z0-9]+|[a-z0-9]+[A-Z][A-Za-z0-9]*)+\b`)
)

// schemaDocPath is the schema's source of truth, relative to this package.
const schemaDocPath = "../docs/SCHEMA.md"

// outputSchemaDoc reads docs/SCHEMA.md.
func outputSchemaDoc(t *testing.T) string {
	t.Helper()
	return readFile(t, filepath.FromSlash(schemaDocPath))
}

// documentedFor cuts the doc to a measurement's part: the "## ..." section whose heading
// names it, or from its first mention to the next measurement's.
func documentedFor(doc, measurement string) documented {
	d := documented{names: map[string]bool{}, values: map[string]map[string]bool{}}
	quoted := "`" + measurement + "`"
	var part string
	for _, sec := range strings.Split(doc, "\n## ") {
		heading, _, _ := strings.Cut(sec, "\n")
		if strings.Contains(heading, quoted) {
			part = sec
		}
	}
	if part == "" {
		i := strings.Index(doc, quoted)
		if i < 0 {
			return d
		}
		part = doc[i+len(quoted):]
		if j := strings.Index(part, "\n`pinpoint_"); j >= 0 {
			part = part[:j]
		}
		if j := strings.Index(part, "\n## "); j >= 0 {
			part = part[:j]
		}
	}
	for _, m := range backticked.FindAllStringSubmatch(part, -1) {
		d.names[m[1]] = true
	}
	// Prose lists too ("tags agent_id, service, ...; fields ActiveConnectionSize"): a name
	// with an underscore or inner capital, mentioned in the measurement's part.
	for _, w := range schemaWord.FindAllString(part, -1) {
		d.names[w] = true
	}
	for _, line := range strings.Split(part, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 2 {
			continue
		}
		for _, name := range strings.Split(cells[0], ",") {
			name = strings.TrimSpace(name)
			d.names[name] = true
			vals := map[string]bool{}
			for _, cell := range cells[1:] {
				for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
					vals[m[1]] = true
				}
			}
			d.values[strings.Trim(name, "`")] = vals
		}
	}
	return d
}

// The measurement names the code declares; the dashboard test accepts no other.
var codeMeasurements = []string{trace.Measurement, stats.MeasurementJVM, stats.MeasurementDataSource, stats.MeasurementURI, stats.MeasurementAgent}
