package point

import (
	"errors"
	"math"
	"testing"
)

func TestEncodeGolden(t *testing.T) {
	cases := []struct {
		name string
		pt   func() *Point
		want string
	}{
		{"all kinds", func() *Point {
			p := New("pinpoint", 1795417119963000000)
			p.SetTag("service", "frontend")
			p.SetTag("agent_id", "frontend-01")
			p.AddField(Int("duration", 1500))
			p.AddField(Uint("u", 7))
			p.AddField(Float("ratio", 0.25))
			p.AddField(String("trace_id", "a^1^2"))
			p.AddField(Bool("ok", true))
			return p
		}, "pinpoint,agent_id=frontend-01,service=frontend duration=1500i,u=7u,ratio=0.25,trace_id=\"a^1^2\",ok=true 1795417119963000000\n"},
		{"escaping", func() *Point {
			p := New("my meas,x", 1)
			p.SetTag("k ey", "v=a,l ue")
			p.AddField(String("f=1", `say "hi" \ bye`))
			return p
		}, "my\\ meas\\,x,k\\ ey=v\\=a\\,l\\ ue f\\=1=\"say \\\"hi\\\" \\\\ bye\" 1\n"},
		// line-protocol/v2 escapes control characters in string fields so that one point is
		// always one physical line (file output, spill and DataWay split on newlines).
		{"multiline string field", func() *Point {
			p := New("m", 0)
			p.AddField(String("stack", "a\nb"))
			return p
		}, "m stack=\"a\\nb\" 0\n"},
		{"negative time and int", func() *Point {
			p := New("m", -5)
			p.AddField(Int("n", math.MinInt64))
			return p
		}, "m n=-9223372036854775808i -5\n"},
		{"unicode", func() *Point {
			p := New("m", 2)
			p.SetTag("svc", "服务")
			p.AddField(String("msg", "héllo"))
			return p
		}, "m,svc=服务 msg=\"héllo\" 2\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := AppendLine(nil, c.pt())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got  %q\nwant %q", got, c.want)
			}
			back, err := Parse(got)
			if err != nil || len(back) != 1 {
				t.Fatalf("parse back: %v %d", err, len(back))
			}
			again, _ := AppendLine(nil, back[0])
			if string(again) != c.want {
				t.Fatalf("round trip: %q", again)
			}
		})
	}
}

func TestInvalidPointsRejected(t *testing.T) {
	cases := []struct {
		name string
		pt   *Point
		want error
	}{
		{"no fields", &Point{Name: "m"}, ErrNoFields},
		{"empty name", &Point{Fields: []Field{Int("a", 1)}}, ErrNoName},
		{"NaN", &Point{Name: "m", Fields: []Field{Float("a", math.NaN())}}, ErrBadFloat},
		{"Inf", &Point{Name: "m", Fields: []Field{Float("a", math.Inf(-1))}}, ErrBadFloat},
		{"empty field key", &Point{Name: "m", Fields: []Field{Int("", 1)}}, ErrBadKey},
		{"bad utf8", &Point{Name: "m", Fields: []Field{String("s", "\xff")}}, ErrBadString},
		{"unsorted tags", &Point{Name: "m", Tags: []Tag{{"b", "1"}, {"a", "1"}}, Fields: []Field{Int("a", 1)}}, ErrTagsUnsorted},
		{"empty tag value", &Point{Name: "m", Tags: []Tag{{"a", ""}}, Fields: []Field{Int("a", 1)}}, ErrBadTagValue},
		{"dup field", &Point{Name: "m", Fields: []Field{Int("a", 1), Int("a", 2)}}, ErrDupField},
		{"newline in name", &Point{Name: "m\n", Fields: []Field{Int("a", 1)}}, ErrNoName},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := NewEncoder()
			good := New("ok", 1)
			good.AddField(Int("v", 1))
			if err := e.Encode(good); err != nil {
				t.Fatal(err)
			}
			if err := e.Encode(c.pt); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if err := e.Encode(good); err != nil {
				t.Fatal(err)
			}
			if got := string(e.Bytes()); got != "ok v=1i 1\nok v=1i 1\n" {
				t.Fatalf("invalid point leaked into the buffer: %q", got)
			}
		})
	}
}

func TestSetTag(t *testing.T) {
	p := New("m", 0)
	p.SetTag("c", "3")
	p.SetTag("a", "1")
	p.SetTag("b", "2")
	p.SetTag("a", "one")
	p.SetTag("c", "")
	p.SetTag("d", "x\ny\\")
	want := []Tag{{"a", "one"}, {"b", "2"}, {"d", "x y"}}
	if len(p.Tags) != len(want) {
		t.Fatalf("tags %v", p.Tags)
	}
	for i := range want {
		if p.Tags[i] != want[i] {
			t.Fatalf("tags %v, want %v", p.Tags, want)
		}
	}
	if v, ok := p.Tag("b"); !ok || v != "2" {
		t.Fatalf("Tag(b) = %q %v", v, ok)
	}
	if _, ok := p.Tag("c"); ok {
		t.Fatal("c not removed")
	}
}

func TestFields(t *testing.T) {
	p := New("m", 0)
	p.AddField(Int("a", 1))
	p.AddField(String("b", "x"))
	p.AddField(Int("a", 2))
	if f, _ := p.Field("a"); f.IntValue() != 2 || len(p.Fields) != 2 {
		t.Fatalf("fields %v", p.Fields)
	}
	if !p.DelField("b") || p.DelField("b") {
		t.Fatal("DelField")
	}
	c := p.Clone()
	c.AddField(Int("z", 1))
	if len(p.Fields) != 1 {
		t.Fatal("Clone shares fields")
	}
}

func TestCategory(t *testing.T) {
	for _, c := range Categories {
		back, err := ParseCategory(c.String())
		if err != nil || back != c {
			t.Fatalf("%v: %v %v", c, back, err)
		}
	}
	if _, err := ParseCategory("traces"); err == nil {
		t.Fatal("want error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("m,a=1 f=1i 1\n"))
	f.Add([]byte("m f=\"x\\\"y\" 2\nn g=true"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pts, err := Parse(data)
		if err != nil {
			return
		}
		e := NewEncoder()
		for _, p := range pts {
			_ = e.Encode(p)
		}
	})
}

func BenchmarkEncodeSpan(b *testing.B) {
	p := New("pinpoint", 1795417119963000000)
	for _, kv := range [][2]string{{"agent_id", "frontend-01"}, {"host", "vm"}, {"operation", "DemoController.demo2()"}, {"service", "frontend"}, {"service_type", "TOMCAT"}, {"source_type", "web"}, {"span_type", "entry"}, {"status", "ok"}} {
		p.SetTag(kv[0], kv[1])
	}
	p.AddField(String("trace_id", "frontend-01^1795417119878^42"))
	p.AddField(String("span_id", "-4389046012309138231"))
	p.AddField(String("parent_id", "0"))
	p.AddField(String("resource", "/api/users"))
	p.AddField(Int("start", 1795417119963000))
	p.AddField(Int("duration", 15000))
	p.AddField(String("message", `{"spanId":"-4389046012309138231","apiId":3,"serviceType":1010}`))
	e := NewEncoder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if e.Len() > 1<<20 {
			e.Reset()
		}
		if err := e.Encode(p); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(e.Len() / max(1, b.N%1000+1)))
}
