package io

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/internal/influxtest"
	"github.com/apmkit/apmkit/point"
)

func startInfluxDB(t *testing.T) *influxtest.Server {
	return influxtest.Start(t, influxtest.Options{})
}

// influxPoints are the values checked exactly after a round trip through InfluxDB.
// \n, \r and \t are left out of strings on purpose: line-protocol/v2 escapes them inside
// string fields as \n, \r, \t, and InfluxDB 1.x does not unescape those, so they would come
// back as two characters. Unsigned fields are left out too: InfluxDB 1.x rejects the `u`
// suffix unless built with uint support.
func influxPoints() []*point.Point {
	const t0 = 1_700_000_000_123_456_789
	a := point.New("span, test", t0)
	a.SetTag("host name", "web 01,eu=west")
	a.SetTag("service", `pay"ment\svc`)
	a.AddField(point.Int("i", -42))
	a.AddField(point.Int("big", 9_007_199_254_740_993)) // 2^53+1: not exact as a float64
	a.AddField(point.Float("f", 3.141592653589793))
	a.AddField(point.String("s", `say "hi", C:\path\ with  spaces=and,commas \"`))
	a.AddField(point.Bool("b", true))
	b := point.New("span, test", t0+1)
	b.SetTag("host name", "db 02")
	b.SetTag("service", "orders")
	b.AddField(point.Int("i", 0))
	b.AddField(point.Int("big", -9_223_372_036_854_775_808))
	b.AddField(point.Float("f", -0.5e-300))
	b.AddField(point.String("s", ""))
	b.AddField(point.Bool("b", false))
	return []*point.Point{a, b}
}

func TestInfluxDBIntegration(t *testing.T) {
	srv := startInfluxDB(t)
	srv.Query(t, "", `CREATE DATABASE "apm"`)

	out := fastRetries(OutputConfig{Type: TypeInfluxDB, URL: srv.URL, Database: "apm"}) // gzip on by default
	u := startUploader(t, testConfig(out), t.TempDir())
	want := influxPoints()
	feed(t, u, point.Tracing, want)
	waitFor(t, "delivery to influxd", func() bool { return outputStats(u, "influxdb").PointsSent >= int64(len(want)) })
	stopUploader(t, u)
	if st := outputStats(u, "influxdb"); st.PermanentErrors != 0 || st.SpillBatches != 0 {
		t.Fatalf("stats %+v", st)
	}

	got := srv.Query(t, "apm", `SELECT * FROM "span, test" ORDER BY time`).Rows()
	if len(got) != len(want) {
		t.Fatalf("influxd has %d rows, want %d: %v", len(got), len(want), got)
	}
	for i, p := range want {
		checkInfluxRow(t, got[i], p)
	}
}

func checkInfluxRow(t *testing.T, row map[string]any, p *point.Point) {
	t.Helper()
	if ts := row["time"].(json.Number).String(); ts != fmt.Sprint(p.Time) {
		t.Errorf("time %s, want %d", ts, p.Time)
	}
	for _, tag := range p.Tags {
		if row[tag.Key] != tag.Value {
			t.Errorf("tag %q = %#v, want %q", tag.Key, row[tag.Key], tag.Value)
		}
	}
	for _, f := range p.Fields {
		got := row[f.Key]
		ok := false
		switch f.Kind() {
		case point.KindInt:
			n, _ := got.(json.Number)
			ok = n.String() == fmt.Sprint(f.IntValue())
		case point.KindFloat:
			n, _ := got.(json.Number)
			v, err := n.Float64()
			ok = err == nil && v == f.FloatValue()
		case point.KindString:
			ok = got == f.StringValue()
		case point.KindBool:
			ok = got == f.BoolValue()
		}
		if !ok {
			t.Errorf("field %q = %#v, want %#v", f.Key, got, f.Value())
		}
	}
	if strings.Contains(fmt.Sprint(row), "\\n") {
		t.Errorf("unexpected escape in %v", row)
	}
}

// seqsIn returns the seq field of every row of measurement m, in time order.
func seqsIn(t *testing.T, s *influxtest.Server, db, m string) []int64 {
	t.Helper()
	var out []int64
	for _, row := range s.Query(t, db, fmt.Sprintf(`SELECT seq FROM %q WHERE seq >= 0 ORDER BY time`, m)).Rows() {
		n, err := row["seq"].(json.Number).Int64()
		if err != nil {
			t.Fatalf("seq %v: %v", row["seq"], err)
		}
		out = append(out, n)
	}
	return out
}

func TestInfluxDBOutputCreatesItsDatabase(t *testing.T) {
	srv := startInfluxDB(t) // no database
	logs, log := newLogBuffer(t)
	out := fastRetries(OutputConfig{Type: TypeInfluxDB, URL: srv.URL, Database: "apm"})
	u := startUploaderWith(t, testConfig(out), t.TempDir(), log, nil)
	feed(t, u, point.Metric, seqPoints("m", 0, 50))
	waitFor(t, "delivery", func() bool { return outputStats(u, "influxdb").PointsSent == 50 })
	stopUploader(t, u)

	wantSeq(t, seqsIn(t, srv, "apm", "m"), 0, 50)
	st := outputStats(u, "influxdb")
	if len(st.Dropped) != 0 || st.SpilledBatches != 0 || st.State != "ok" {
		t.Fatalf("stats %+v", st)
	}
	if bad := append(logs.find("ERROR"), logs.find("WARN")...); len(bad) != 0 {
		t.Fatalf("unexpected warnings: %q", bad)
	}
}

func TestInfluxDBSkipDatabaseCreationKeepsBatchesUntilItExists(t *testing.T) {
	srv := startInfluxDB(t)
	logs, log := newLogBuffer(t)
	out := fastRetries(OutputConfig{Type: TypeInfluxDB, URL: srv.URL, Database: "apm", SkipDatabaseCreation: true})
	u := startUploaderWith(t, testConfig(out), t.TempDir(), log, nil)
	feed(t, u, point.Metric, seqPoints("m", 0, 30))
	waitFor(t, "the batch spilled", func() bool {
		st := outputStats(u, "influxdb")
		return st.SpilledBatches == 1 && st.State == "config_error"
	})
	if st := outputStats(u, "influxdb"); len(st.Dropped) != 0 || st.PointsSent != 0 || !strings.Contains(st.LastError, "database not found") {
		t.Fatalf("stats %+v: the batch must be kept", st)
	}
	if errs := logs.find("ERROR"); len(errs) != 1 || len(logs.find("ERROR", `database not found: \"apm\"`, "output=influxdb", srv.URL, "skip_database_creation")) != 1 {
		t.Fatalf("want one ERROR with the server's message, the output and its URL; got %q", errs)
	}

	srv.Query(t, "", `CREATE DATABASE "apm"`) // what the user does after reading the log
	waitFor(t, "delivery once the database exists", func() bool { return outputStats(u, "influxdb").PointsSent == 30 })
	stopUploader(t, u)
	wantSeq(t, seqsIn(t, srv, "apm", "m"), 0, 30)
	if st := outputStats(u, "influxdb"); st.State != "ok" || st.SpillBatches != 0 || len(st.Dropped) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(logs.find("ERROR")); n != 1 {
		t.Fatalf("%d ERROR lines, want 1 (then at most one a minute)", n)
	}
}

// A batch with lines InfluxDB refuses (a field type conflict: 400 "partial write"; an
// unsigned integer InfluxDB 1.x cannot parse) is split until only those lines are left out.
func TestInfluxDBMalformedLinesDroppedOthersLand(t *testing.T) {
	srv := startInfluxDB(t)
	srv.Query(t, "", `CREATE DATABASE "apm"`)
	srv.Write(t, "apm", "mixed,service=checkout v=1i 1\n") // v is an integer from now on
	pts := seqPoints("mixed", 0, 40)
	var conflict, unparsable []int
	for i, p := range pts {
		switch {
		case i%9 == 4:
			p.AddField(point.Float("v", 0.5))
			conflict = append(conflict, i)
		case i%10 == 7:
			p.AddField(point.Uint("u", 7))
			unparsable = append(unparsable, i)
		default:
			p.AddField(point.Int("v", int64(i)))
		}
	}
	bad := append(append([]int(nil), conflict...), unparsable...)
	out := fastRetries(OutputConfig{Type: TypeInfluxDB, URL: srv.URL, Database: "apm"})
	u := startUploader(t, testConfig(out), t.TempDir())
	feed(t, u, point.Metric, pts)
	waitFor(t, "every point delivered or dropped", func() bool {
		st := outputStats(u, "influxdb")
		return st.PointsSent+st.Dropped["malformed"] >= 40
	})
	stopUploader(t, u)

	if got, want := seqsIn(t, srv, "apm", "mixed"), goodSeqs(40, bad...); !slices.Equal(got, want) {
		t.Fatalf("influxd has seqs %v, want %v", got, want)
	}
	st := outputStats(u, "influxdb")
	if st.PointsSent != int64(40-len(bad)) || len(st.Dropped) != 1 || st.Dropped["malformed"] != int64(len(bad)) || st.SpillBatches != 0 {
		t.Fatalf("stats %+v, want %d sent and %d (%v) dropped as malformed", st, 40-len(bad), len(bad), bad)
	}
}

// With authentication on and a wrong password, the batches are kept (401 is a configuration
// error) and a later run with the right password delivers them from the spill.
func TestInfluxDBWrongPasswordKeepsBatchesForTheNextRun(t *testing.T) {
	srv := influxtest.Start(t, influxtest.Options{Auth: true})
	// With no user yet, influxd takes this one statement without credentials.
	srv.Query(t, "", `CREATE USER "admin" WITH PASSWORD 'right' WITH ALL PRIVILEGES`)
	srv.User, srv.Password = "admin", "right"
	dataDir := t.TempDir()
	logs, log := newLogBuffer(t)
	out := fastRetries(OutputConfig{Type: TypeInfluxDB, URL: srv.URL, Database: "apm", Username: "admin", Password: "wrong"})
	u := startUploaderWith(t, testConfig(out), dataDir, log, nil)
	feed(t, u, point.Tracing, seqPoints("span", 0, 20))
	waitFor(t, "the batch spilled", func() bool {
		st := outputStats(u, "influxdb")
		return st.SpilledBatches == 1 && st.State == "config_error"
	})
	stopUploader(t, u)
	if st := outputStats(u, "influxdb"); len(st.Dropped) != 0 || st.PointsSent != 0 {
		t.Fatalf("stats %+v: the batch must be kept", st)
	}
	if errs := logs.find("ERROR"); len(errs) != 1 || len(logs.find("ERROR", "HTTP 401", "authorization failed", "output=influxdb", srv.URL)) != 1 {
		t.Fatalf("want one ERROR with the 401 and the server's message; got %q", errs)
	}
	wantSeq(t, seqOf(t, spilledPoints(t, dataDir, "influxdb")), 0, 20)

	out.Password = "right"
	u = startUploader(t, testConfig(out), dataDir)
	waitFor(t, "the spill delivered", func() bool { return outputStats(u, "influxdb").PointsSent == 20 })
	stopUploader(t, u)
	wantSeq(t, seqsIn(t, srv, "apm", "span"), 0, 20)
	if st := outputStats(u, "influxdb"); st.SpillBatches != 0 || len(st.Dropped) != 0 || st.State != "ok" {
		t.Fatalf("stats %+v", st)
	}
}
