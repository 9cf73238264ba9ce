package io

import (
	"bytes"
	"context"
	"fmt"
	stdio "io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/apmkit/apmkit/internal/version"
	"github.com/apmkit/apmkit/point"
)

// httpSender POSTs a batch's line protocol. dataway, influxdb and influxdb2 differ only in
// the URL per category, the headers and authentication, which newHTTPSender's callers set.
type httpSender struct {
	kind      string
	masked    string // the configured URL with secrets masked
	endpoints map[point.Category]string
	header    http.Header // sent with every request; cloned per request
	gzip      bool
	gzipLevel int
	xPoints   bool // DataWay wants the point count in X-Points
	client    *http.Client
	transport *http.Transport
	extra     string // shown by describe, e.g. "db=apm"
	// createDB is InfluxDB 1.x's CREATE DATABASE; nil for the other types and with
	// skip_database_creation.
	createDB *databaseCreator
}

// userAgent is apmkit/<version>; the OS and architecture follow as a comment, as DataKit
// puts them in its own User-Agent.
func userAgent() string {
	return fmt.Sprintf("apmkit/%s (%s; %s)", version.Version, runtime.GOOS, runtime.GOARCH)
}

func newHTTPSender(kind string, cfg OutputConfig) *httpSender {
	// Each output owns its transport: its connections, and CloseIdleConnections on stop,
	// are its own (no shared http.DefaultTransport).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(4, cfg.MaxInFlight) // a connection per request in flight
	s := &httpSender{
		kind:      kind,
		masked:    maskURL(cfg.URL),
		endpoints: map[point.Category]string{},
		header:    http.Header{},
		gzip:      cfg.GzipEnabled(),
		gzipLevel: cfg.GzipLevel,
		client:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		transport: tr,
	}
	s.header.Set("User-Agent", userAgent())
	if s.gzip {
		s.header.Set("Content-Encoding", "gzip")
	}
	return s
}

// applyUserHeaders comes last so configured headers win over the defaults.
func (s *httpSender) applyUserHeaders(h map[string]string) {
	for k, v := range h {
		s.header.Set(k, v)
	}
}

// newDatawaySender posts to {url without query}/v1/write/{category}?{the url's query}, so the
// token= query is kept. Headers follow DataKit's dataway writer: Content-Encoding, X-Points,
// User-Agent, X-Datakit-Info "<host>; <version>" and Content-Type application/line-protocol
// (what DataKit sends for line protocol; DataWay also reads an unknown type as line protocol).
// DataKit sends no precision header: line protocol timestamps are nanoseconds by default.
func newDatawaySender(cfg OutputConfig) (*httpSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("dataway url: %w", err)
	}
	s := newHTTPSender(TypeDataway, cfg)
	base := strings.TrimRight(u.Path, "/")
	for _, c := range point.Categories {
		cu := *u
		cu.Path = base + "/v1/write/" + c.String()
		cu.RawPath = ""
		s.endpoints[c] = cu.String()
	}
	s.xPoints = true
	s.header.Set("Content-Type", "application/line-protocol")
	host, _ := os.Hostname()
	s.header.Set("X-Datakit-Info", fmt.Sprintf("%s; %s", host, version.Version))
	s.applyUserHeaders(cfg.Headers)
	return s, nil
}

// newInfluxDBSender posts to InfluxDB 1.x: {url}/write?db=&rp=&precision=ns, optional basic auth.
func newInfluxDBSender(cfg OutputConfig) (*httpSender, error) {
	q := url.Values{"db": {cfg.Database}, "precision": {"ns"}}
	if cfg.RetentionPolicy != "" {
		q.Set("rp", cfg.RetentionPolicy)
	}
	s, err := newInfluxSender(TypeInfluxDB, cfg, "/write", q)
	if err != nil {
		return nil, err
	}
	if cfg.Username != "" {
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(cfg.Username, cfg.Password.Reveal())
		s.header.Set("Authorization", req.Header.Get("Authorization"))
	}
	s.extra = "db=" + cfg.Database
	s.applyUserHeaders(cfg.Headers)
	if !cfg.SkipDatabaseCreation {
		s.createDB = newDatabaseCreator(cfg)
	}
	return s, nil
}

// newInfluxDB2Sender posts to InfluxDB 2.x: {url}/api/v2/write?org=&bucket=&precision=ns with
// Authorization: Token. VictoriaMetrics accepts both influx paths too.
func newInfluxDB2Sender(cfg OutputConfig) (*httpSender, error) {
	q := url.Values{"org": {cfg.Org}, "bucket": {cfg.Bucket}, "precision": {"ns"}}
	s, err := newInfluxSender(TypeInfluxDB2, cfg, "/api/v2/write", q)
	if err != nil {
		return nil, err
	}
	s.header.Set("Authorization", "Token "+cfg.Token.Reveal())
	s.extra = "org=" + cfg.Org + " bucket=" + cfg.Bucket
	s.applyUserHeaders(cfg.Headers)
	return s, nil
}

func newInfluxSender(kind string, cfg OutputConfig, path string, params url.Values) (*httpSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s url: %w", kind, err)
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	s := newHTTPSender(kind, cfg)
	// InfluxDB has no categories: all of them go to the same write endpoint.
	for _, c := range point.Categories {
		s.endpoints[c] = u.String()
	}
	s.header.Set("Content-Type", "text/plain; charset=utf-8")
	return s, nil
}

// send posts the batch. When InfluxDB 1.x says the database does not exist, it creates it
// (unless skip_database_creation) and posts again: the user may have dropped it, or it
// could not be created at start.
func (s *httpSender) send(ctx context.Context, b *batch) (sendResult, error) {
	n, err := s.post(ctx, b)
	if s.createDB != nil && missingDatabase(err) {
		if cerr := s.createDB.create(ctx, s); cerr != nil {
			return sendResult{}, withCreateFailure(err, cerr)
		}
		n, err = s.post(ctx, b)
	}
	return sendResult{bytes: n}, err
}

// prepare sets the destination up before the first batch: InfluxDB 1.x's database.
func (s *httpSender) prepare(ctx context.Context) error {
	if s.createDB == nil {
		return nil
	}
	return s.createDB.create(ctx, s)
}

func (s *httpSender) post(ctx context.Context, b *batch) (int, error) {
	var body []byte
	var err error
	if s.gzip {
		body, err = b.gzipBytes(s.gzipLevel)
	} else {
		body, err = b.lendRaw()
	}
	if err != nil {
		return 0, &sendError{msg: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoints[b.cat], bytes.NewReader(body))
	if err != nil {
		return 0, &sendError{class: classPermanent, msg: fmt.Sprintf("POST %s: %v", s.masked, err)}
	}
	req.Header = s.header.Clone()
	if s.xPoints {
		req.Header.Set("X-Points", strconv.Itoa(b.points))
	}
	if err := s.do(req); err != nil {
		return 0, err
	}
	return len(body), nil
}

// do sends a request and classifies a failure; the body of a 2xx answer is drained.
func (s *httpSender) do(req *http.Request) error {
	resp, err := s.client.Do(req)
	if err != nil {
		return networkError(err, s.masked)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		drain(resp.Body)
		return nil
	}
	body, _ := stdio.ReadAll(stdio.LimitReader(resp.Body, 1024))
	drain(resp.Body)
	return statusError(resp, serverMessage(body, resp.Header), time.Now())
}

// drain reads a little of what is left so the connection can be reused.
func drain(r stdio.Reader) {
	_, _ = stdio.Copy(stdio.Discard, stdio.LimitReader(r, 64<<10))
}

func (s *httpSender) describe() string {
	d := s.kind + ": " + s.masked
	if s.extra != "" {
		d += " " + s.extra
	}
	return d
}

func (s *httpSender) location() string { return s.masked }

func (s *httpSender) close() error {
	s.transport.CloseIdleConnections()
	return nil
}
