package explorer

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/tracestore"
)

var testNow = time.UnixMilli(1_800_000_000_000)

// serve runs the explorer over a store holding two root spans: one 30 minutes before
// testNow, one two hours before (outside the default range).
func serve(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	st, err := tracestore.Open(t.TempDir(), tracestore.Options{CheckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	enc := point.NewEncoder()
	for i, ago := range []time.Duration{30 * time.Minute, 2 * time.Hour} {
		start := testNow.Add(-ago).UnixMilli()
		p := point.New("pinpoint", start*1e6)
		p.SetTag("service", "shop")
		p.SetTag("agent_id", "shop-1")
		p.SetTag("span_type", "entry")
		p.SetTag("status", "ok")
		p.AddField(point.String("trace_id", "shop-1^1^"+strconv.Itoa(i)))
		p.AddField(point.String("span_id", "1"))
		p.AddField(point.String("parent_id", "0"))
		p.AddField(point.Int("start", start*1000))
		p.AddField(point.Int("duration", 5000))
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Write(enc.Bytes()); err != nil {
		t.Fatal(err)
	}
	opts.Now = func() time.Time { return testNow }
	srv := httptest.NewServer(New(st, opts))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestBadParametersAre400(t *testing.T) {
	srv := serve(t, Options{})
	cases := []struct{ query, want string }{
		{"/api/v1/transactions?from=abc", `from: "abc" is not an integer`},
		{"/api/v1/transactions?from=20&to=10", "from (20) is after to (10)"},
		{"/api/v1/transactions?min_ms=-1", `min_ms: "-1" is not a number of milliseconds >= 0`},
		{"/api/v1/transactions?min_ms=50&max_ms=10", "min_ms is above max_ms"},
		{"/api/v1/transactions?error=yes", `error: "yes" is not true or false`},
		{"/api/v1/transactions?status=600", `status: "600" is not an HTTP status (200) or class (5xx)`},
		{"/api/v1/transactions?sort=size", `sort: "size" is not one of start, duration`},
		{"/api/v1/transactions?limit=10001", `limit: "10001" is not an integer from 0 to 10000`},
		{"/api/v1/transactions?attr=novalue", `attr: "novalue" is not key=value`},
		{"/api/v1/transactions?app=a&app=b", "app: given 2 times, at most once"},
		{"/api/v1/transactions?min=5", "min: unknown parameter (known: agent, app, attr, error, exception, from, limit, max_ms, method, min_ms, sort, status, to, trace_id, url, url_exact)"},
		{"/api/v1/transactions/x?from=1", "from: unknown parameter"},
		{"/api/v1/servicemap?to=-5", `to: "-5" is not an integer`},
		{"/api/v1/inspector?from=1", "agent: required"},
		{"/api/v1/agents?agent=x", "agent: unknown parameter (known: app)"},
	}
	for _, c := range cases {
		code, body, hdr := get(t, srv.URL+c.query)
		var e struct{ Error string }
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.want) ||
			hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s, want 400 with %q", c.query, code, body, c.want)
		}
	}
	code, body, _ := get(t, srv.URL+"/api/v1/transactions?from=1&error=false&attr=service=shop&min_ms=1.5&limit=0")
	if code != 200 || !strings.Contains(body, `"total":2`) {
		t.Errorf("valid parameters: %d %s", code, body)
	}
}

// TestDefaultRangeIsTheLastHour: without from and to, the hour up to now.
func TestDefaultRangeIsTheLastHour(t *testing.T) {
	srv := serve(t, Options{})
	_, body, _ := get(t, srv.URL+"/api/v1/transactions")
	var res struct {
		From, To int64
		Total    int
		Rows     []transactionRow `json:"transactions"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	now := testNow.UnixMilli()
	if res.From != now-3_600_000 || res.To != now || res.Total != 1 || res.Rows[0].TraceID != "shop-1^1^0" || res.Rows[0].DurationMs != 5 {
		t.Errorf("default range: %s", body)
	}
}

func TestAuth(t *testing.T) {
	srv := serve(t, Options{Token: "tok-0123456789", Username: "ops", Password: "pw-0123456789"})
	url := srv.URL + "/api/v1/agents"
	cases := []struct {
		name   string
		header []string
		want   int
	}{
		{"none", nil, 401},
		{"bearer", []string{"Authorization", "Bearer tok-0123456789"}, 200},
		{"wrong bearer", []string{"Authorization", "Bearer tok-0123456780"}, 401},
		{"basic user", []string{"Authorization", basic("ops", "pw-0123456789")}, 200},
		{"basic wrong password", []string{"Authorization", basic("ops", "pw-0123456780")}, 401},
		{"basic token as password", []string{"Authorization", basic("anyone", "tok-0123456789")}, 200},
	}
	for _, c := range cases {
		code, _, hdr := get(t, url, c.header...)
		if code != c.want || (code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ")) {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	if code, _, _ := get(t, srv.URL+"/"); code != 401 {
		t.Errorf("the page without credentials: %d", code)
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestPagesAndAssets(t *testing.T) {
	srv := serve(t, Options{})
	for _, path := range []string{"/", "/transaction/shop-1%5E1%5E0", "/servicemap", "/inspector", "/inspector/shop-1"} {
		code, body, hdr := get(t, srv.URL+path)
		if code != 200 || !strings.Contains(body, `<script src="/assets/app.js" defer></script>`) ||
			!strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: %d %q", path, code, hdr.Get("Content-Type"))
		}
	}
	for path, typ := range map[string]string{"/assets/app.js": "text/javascript", "/assets/app.css": "text/css"} {
		if code, _, hdr := get(t, srv.URL+path); code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), typ) {
			t.Errorf("%s: %d %s", path, code, hdr.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/nope", "/api/v2/transactions", "/assets/none.js"} {
		if code, _, _ := get(t, srv.URL+path); code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	if code, body, _ := get(t, srv.URL+"/api/v1/transactions/nope"); code != 404 || !strings.Contains(body, "no trace") {
		t.Errorf("unknown trace: %d %s", code, body)
	}
}

func TestWithoutStore(t *testing.T) {
	srv := httptest.NewServer(New(nil, Options{}))
	defer srv.Close()
	if code, body, _ := get(t, srv.URL+"/api/v1/transactions"); code != 503 || !strings.Contains(body, "io.explorer = false") {
		t.Errorf("API without a store: %d %s", code, body)
	}
	if code, _, _ := get(t, srv.URL+"/"); code != 200 {
		t.Errorf("page without a store: %d", code)
	}
}
