// Package influxtest runs a real influxd (InfluxDB 1.x, Debian's `influxdb` package) for
// tests: on loopback ports, with its data in the test's temp dir, killed when the test
// ends. Tests of what lands in InfluxDB query it back instead of trusting what was sent.
package influxtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/internal/proctest"
	"github.com/apmkit/apmkit/point"
)

// Server is a running influxd.
type Server struct {
	URL string // http://127.0.0.1:port
	// User and Password, when set, authenticate Query and Write (servers with Auth).
	User, Password string
	client         *http.Client
}

// Options change the server's configuration.
type Options struct {
	// Auth turns authentication on; the first user must then be created with
	// CREATE USER ... WITH ALL PRIVILEGES (InfluxDB allows that one query without auth).
	Auth bool
}

// Start runs influxd for the test. Without influxd the test is skipped, except in CI
// (CI=true), where a missing server must fail the build rather than silently skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := proctest.LookPath(t, "influxd",
		"influxd not found: install the Debian package `influxdb` (apt-get install influxdb)",
		"influxd not found (install the Debian package `influxdb`); skipping a test against a real InfluxDB")
	dir := t.TempDir()
	httpAddr, rpcAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	conf := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(conf, []byte(config(dir, httpAddr, rpcAddr, opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "http://" + httpAddr, client: &http.Client{Transport: &http.Transport{}, Timeout: 60 * time.Second}}
	t.Cleanup(s.client.CloseIdleConnections) // after the kill: cleanups run last first
	p := proctest.Run(t, "influxd", filepath.Join(dir, "influxd.log"), bin, "-config", conf)
	if err := p.WaitReady(30*time.Second, s.ping); err != nil {
		t.Fatalf("influxd %v", err)
	}
	return s
}

// config keeps everything in dir, listens on loopback only and turns off reporting and
// every listener and service the tests do not need. The write limits are raised so a
// burst of a few hundred thousand points is taken as it comes.
func config(dir, httpAddr, rpcAddr string, opts Options) string {
	return fmt.Sprintf(`reporting-disabled = true
bind-address = %q

[meta]
  dir = %q
  logging-enabled = false

[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = %q
  auth-enabled = %t
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0

[ifql]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
`, rpcAddr, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpAddr, opts.Auth)
}

// ping is nil once influxd answers /ping.
func (s *Server) ping() error {
	resp, err := s.client.Get(s.URL + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("/ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Query runs InfluxQL with nanosecond epochs and returns the decoded body; numbers stay
// json.Number so 64-bit integers compare exactly. An error in the answer fails the test.
func (s *Server) Query(t testing.TB, db, q string) Result {
	t.Helper()
	form := url.Values{"q": {q}, "epoch": {"ns"}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/query", bytes.NewBufferString(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.do(req)
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("query %q: HTTP %d: %s", q, resp.StatusCode, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out Result
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("query %q: %v: %s", q, err, body)
	}
	for _, r := range out.Results {
		if r.Error != "" {
			t.Fatalf("query %q: %s", q, r.Error)
		}
	}
	return out
}

// Write posts line protocol (nanosecond timestamps) to db directly, as test setup.
func (s *Server) Write(t testing.TB, db, lines string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/write?precision=ns&db="+url.QueryEscape(db), bytes.NewBufferString(lines))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("write: HTTP %d: %s", resp.StatusCode, body)
	}
}

func (s *Server) do(req *http.Request) (*http.Response, error) {
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Password)
	}
	return s.client.Do(req)
}

// Result is InfluxDB 1.x's query answer.
type Result struct {
	Results []struct {
		Series []Series `json:"series"`
		Error  string   `json:"error"`
	} `json:"results"`
}

// Series is one series of an answer.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Rows returns the rows of every series of the first statement as column->value maps,
// with the series' tags (GROUP BY) added.
func (r Result) Rows() []map[string]any {
	if len(r.Results) == 0 {
		return nil
	}
	var out []map[string]any
	for _, s := range r.Results[0].Series {
		for _, v := range s.Values {
			row := map[string]any{}
			for k, tv := range s.Tags {
				row[k] = tv
			}
			for i, c := range s.Columns {
				row[c] = v[i]
			}
			out = append(out, row)
		}
	}
	return out
}

// Databases lists the server's databases.
func (s *Server) Databases(t testing.TB) []string {
	t.Helper()
	var dbs []string
	for _, row := range s.Query(t, "", "SHOW DATABASES").Rows() {
		dbs = append(dbs, fmt.Sprint(row["name"]))
	}
	return dbs
}

// CountBy returns the number of rows of a measurement per value of tag ("" for all rows
// under key ""), counting a field every row of it has. It counts rows, not points sent:
// points that share a series and a timestamp are one row.
func (s *Server) CountBy(t testing.TB, db, measurement, field, tag string) map[string]int64 {
	t.Helper()
	q := fmt.Sprintf(`SELECT count(%q) FROM %q`, field, measurement)
	if tag != "" {
		q += fmt.Sprintf(` GROUP BY %q`, tag)
	}
	out := map[string]int64{}
	for _, row := range s.Query(t, db, q).Rows() {
		n, err := strconv.ParseInt(fmt.Sprint(row["count"]), 10, 64)
		if err != nil {
			t.Fatalf("%s: count %v: %v", q, row["count"], err)
		}
		key := ""
		if tag != "" {
			key = fmt.Sprint(row[tag])
		}
		out[key] += n
	}
	return out
}

// Counts is what a store holds: rows per measurement, and span rows (measurement
// `pinpoint`) per span_type.
type Counts struct {
	Measurements map[string]int64
	SpanTypes    map[string]int64
}

func (c Counts) String() string {
	return fmt.Sprintf("measurements %v, span types %v", c.Measurements, c.SpanTypes)
}

// Equal compares two Counts exactly.
func (c Counts) Equal(o Counts) bool {
	return maps.Equal(c.Measurements, o.Measurements) && maps.Equal(c.SpanTypes, o.SpanTypes)
}

// CountFiles counts the points of line-protocol files as InfluxDB would store them, and
// fails the test when two of them would be one row (same measurement, tags and time).
func CountFiles(t testing.TB, files []string) Counts {
	t.Helper()
	c := Counts{Measurements: map[string]int64{}, SpanTypes: map[string]int64{}}
	rows := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pts, err := point.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range pts {
			c.Measurements[p.Name]++
			if p.Name == "pinpoint" {
				st, _ := p.Tag("span_type")
				c.SpanTypes[st]++
			}
			key := rowKey(p)
			if rows[key] {
				t.Errorf("two points share one InfluxDB row: %s", key)
			}
			rows[key] = true
		}
	}
	return c
}

// rowKey is what InfluxDB keys a row by: measurement, tags and time.
func rowKey(p *point.Point) string {
	var b strings.Builder
	b.WriteString(p.Name)
	for _, tg := range p.Tags {
		b.WriteString("," + tg.Key + "=" + tg.Value)
	}
	b.WriteString(" " + strconv.FormatInt(p.Time, 10))
	return b.String()
}

// Counts queries the rows of the given measurements of db, and the span rows per
// span_type. Every row apmkit writes has a field, so SELECT * returns each row once; span
// rows are counted by trace_id, which every span has.
func (s *Server) Counts(t testing.TB, db string, measurements []string) Counts {
	t.Helper()
	c := Counts{Measurements: map[string]int64{}, SpanTypes: s.CountBy(t, db, "pinpoint", "trace_id", "span_type")}
	for _, m := range measurements {
		if m != "pinpoint" {
			c.Measurements[m] = int64(len(s.Query(t, db, fmt.Sprintf(`SELECT * FROM %q`, m)).Rows()))
			continue
		}
		for _, n := range c.SpanTypes {
			c.Measurements[m] += n
		}
	}
	return c
}
