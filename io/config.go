package io

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apmkit/apmkit/internal/secret"
	"github.com/apmkit/apmkit/point"
	"github.com/apmkit/apmkit/tracestore"
)

// Config is the `[io]` table of apmkit.conf.
type Config struct {
	QueueMaxMB     int            `toml:"queue_max_mb" doc:"Memory, in MiB of line protocol, for batches being filled or waiting for an output (bounded memory). An output whose backlog passes a quarter of it moves its oldest batches to its disk spill; when it is all in use, inputs wait (feed_timeout)."`
	FeedTimeout    time.Duration  `toml:"feed_timeout" doc:"How long an input waits for room in queue_max_mb before its points are dropped and counted."`
	BatchMaxPoints int            `toml:"batch_max_points" doc:"A batch is sent when it holds this many points..."`
	BatchMaxBytes  int            `toml:"batch_max_bytes" doc:"...or this many bytes of line protocol (a single longer line is sent alone)..."`
	FlushInterval  time.Duration  `toml:"flush_interval" doc:"...or when its oldest point is this old."`
	StopTimeout    time.Duration  `toml:"stop_timeout" doc:"On stop, how long queued batches may take to reach the outputs; the rest is spilled to disk."`
	Explorer       bool           `toml:"explorer" doc:"Keep the embedded explorer's data: unless an output of type local is configured, apmkit adds one with its defaults\n(DATA_DIR/explorer, categories metric and tracing, retention 72h, max_mb 1024) beside the configured outputs,\nor beside the implicit file output when none is configured. false: no implicit local output (the explorer page then says so)."`
	Outputs        []OutputConfig `toml:"outputs" doc:"Where points go. Every output receives every batch of its categories independently.\nWith no output configured, apmkit writes line-protocol files under DATA_DIR/out/ (and, with explorer = true,\nkeeps the explorer's local store). Several DataWay URLs = several dataway outputs. otlp sends to Jaeger, Tempo or an OpenTelemetry Collector (docs/OTLP.md)." example:"[[io.outputs]]\n  type = \"dataway\"\n  url = \"https://openway.guance.com?token=tkn_xxx\"\n\n[[io.outputs]]\n  type = \"influxdb\"\n  url = \"http://127.0.0.1:8086\"\n  database = \"apm\"\n\n[[io.outputs]]\n  type = \"file\"\n  categories = [\"tracing\"]\n\n[[io.outputs]]\n  type = \"otlp\"\n  endpoint = \"127.0.0.1:4317\"\n  insecure = true\n  categories = [\"tracing\"]"`
}

// OutputConfig is one `[[io.outputs]]` table.
type OutputConfig struct {
	Type string `toml:"type" doc:"file | dataway | influxdb | influxdb2 | otlp | local (the explorer's trace store; at most one)"`
	Name string `toml:"name" doc:"Unique name (metrics, spill folder DATA_DIR/spill/<name>). Letters, digits, '-', '_', '.'. Default: the type, then type-2, type-3..."`
	// Categories limits the output to some categories (metric, tracing, logging, object); empty = all.
	Categories []string `toml:"categories" doc:"Categories this output receives (metric, tracing, logging, object). Empty = all (otlp: metric and tracing, the ones it takes; set [\"tracing\"] for a traces-only backend such as Jaeger)."`

	URL     string        `toml:"url" doc:"dataway: https://openway.guance.com?token=tkn_xxx (the token query is kept)\ninfluxdb/influxdb2: http://127.0.0.1:8086"`
	Timeout time.Duration `toml:"timeout" doc:"Per-request timeout of HTTP and otlp outputs. Default 30s."`
	// Gzip is a pointer so that an explicit `gzip = false` survives defaults-filling: a plain
	// bool cannot tell "unset" (default true) from "false".
	Gzip      *bool             `toml:"gzip" doc:"Compress HTTP request bodies (otlp: gRPC messages too) with gzip. Default true."`
	GzipLevel int               `toml:"gzip_level" doc:"gzip level, 1 (fastest) to 9 (smallest), of request bodies and of the disk spill. Default 1: span line protocol still shrinks to about a tenth, at half the CPU of level 5."`
	Headers   map[string]string `toml:"headers" doc:"Extra HTTP headers (they win over apmkit's own); otlp grpc: gRPC metadata. Values of secret-like headers (Authorization, *token*, *key*) are masked wherever they are printed." example:"X-Tenant = \"shop\""`

	Endpoint      string `toml:"endpoint" doc:"otlp: where to send. protocol grpc: host:port (TLS unless insecure = true), or http://host:port (plaintext) / https://host:port; protocol http/protobuf: the base URL, e.g. http://127.0.0.1:4318, to which apmkit adds /v1/traces and /v1/metrics."`
	Protocol      string `toml:"protocol" doc:"otlp: grpc (default) or http/protobuf."`
	Insecure      bool   `toml:"insecure" doc:"otlp grpc: plaintext, no TLS (a collector on the same host or network). An http:// endpoint is plaintext too."`
	TLSCAFile     string `toml:"tls_ca_file" doc:"otlp: PEM file of the CA that signed the server's certificate (default: the system's CAs)."`
	TLSCertFile   string `toml:"tls_cert_file" doc:"otlp: PEM client certificate, for servers that want mutual TLS (with tls_key_file)."`
	TLSKeyFile    string `toml:"tls_key_file" doc:"otlp: PEM key of tls_cert_file."`
	TLSSkipVerify bool   `toml:"tls_insecure_skip_verify" doc:"otlp: do not check the server's certificate (tests only: anyone in the path can read and change the data)."`

	Database        string        `toml:"database" doc:"influxdb: database (db=)."`
	RetentionPolicy string        `toml:"retention_policy" doc:"influxdb: retention policy (rp=), optional."`
	Username        string        `toml:"username" doc:"influxdb: basic-auth user, optional."`
	Password        secret.Secret `toml:"password" doc:"influxdb: basic-auth password, optional (masked wherever it is printed)."`
	Org             string        `toml:"org" doc:"influxdb2: organization."`
	Bucket          string        `toml:"bucket" doc:"influxdb2: bucket."`
	Token           secret.Secret `toml:"token" doc:"influxdb2: API token (masked wherever it is printed)."`

	// SkipDatabaseCreation is for users without admin rights: CREATE DATABASE needs them.
	SkipDatabaseCreation bool `toml:"skip_database_creation" doc:"influxdb: do not send CREATE DATABASE (at start, and when a write says the database is missing), which needs admin rights; the database must then exist. Until it does, batches are kept in the disk spill and an ERROR is logged."`

	Dir       string `toml:"dir" doc:"file: folder for the .lp files. Default DATA_DIR/out.\nlocal: folder of the trace store (a badger database of its own). Default DATA_DIR/explorer."`
	MaxFileMB int    `toml:"max_file_mb" doc:"file: start a new file when the current one would grow beyond this size. Default 64."`
	MaxFiles  int    `toml:"max_files" doc:"file: files kept per category, the one being written included; the oldest is deleted. Default 10."`

	Retention time.Duration `toml:"retention" doc:"local: how long data is kept, counted from when apmkit stored it (replayed or late data is kept as long as fresh data).\nData is dropped an eighth of the retention at a time, so it may stay up to an eighth longer. Default 72h."`
	MaxMB     int           `toml:"max_mb" doc:"local: bound of the store's disk usage in MiB; beyond it the oldest data is dropped, about an eighth at a time. Default 1024."`

	QueueMaxBatches int           `toml:"queue_max_batches" doc:"Batches waiting in memory for this output (at most a quarter of io.queue_max_mb); beyond that (slow or failing output) the oldest go to the disk spill. Default 16."`
	MaxInFlight     int           `toml:"max_in_flight" doc:"Requests this output sends at once: new batches first, then its disk spill (oldest first) with the requests they leave; while the output fails, one request at a time tries the spill's oldest batch. Batches may arrive out of order (a point written again overwrites itself). Ignored by file and local outputs, which write one batch at a time. Default 2."`
	RetryInitial    time.Duration `toml:"retry_initial" doc:"First retry delay; it doubles (with jitter) up to retry_max. Default 1s."`
	RetryMax        time.Duration `toml:"retry_max" doc:"Longest delay between two retries; also caps a server's Retry-After. Default 30s."`
	RetryMaxElapsed time.Duration `toml:"retry_max_elapsed" doc:"After retrying this long, a batch goes to the disk spill. Default 1m."`
	CapacityMB      int           `toml:"capacity_mb" doc:"Disk spill capacity in MiB for batches this output could not take; beyond it the oldest is dropped and counted. Default 1024."`
}

// Output types.
const (
	TypeFile      = "file"
	TypeDataway   = "dataway"
	TypeInfluxDB  = "influxdb"
	TypeInfluxDB2 = "influxdb2"
	TypeOTLP      = "otlp"
	TypeLocal     = "local"
)

// OTLP protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// allowedTypes is what error messages list; keep it in step with knownType.
const allowedTypes = "file, dataway, influxdb, influxdb2, otlp, local"

func knownType(t string) bool {
	switch t {
	case TypeFile, TypeDataway, TypeInfluxDB, TypeInfluxDB2, TypeOTLP, TypeLocal:
		return true
	}
	return false
}

// Defaults. queue_max_mb bounds the memory of the whole uploader's line protocol; a batch
// of 1000 spans is about 700 KB.
const (
	defaultQueueMaxMB      = 16
	defaultFeedTimeout     = 5 * time.Second
	defaultBatchMaxPoints  = 1000
	defaultBatchMaxBytes   = 4 << 20
	defaultFlushInterval   = time.Second
	defaultStopTimeout     = 10 * time.Second
	defaultHTTPTimeout     = 30 * time.Second
	defaultGzip            = true
	defaultGzipLevel       = 1
	defaultQueueMaxBatches = 16
	defaultMaxInFlight     = 2
	defaultRetryInitial    = time.Second
	defaultRetryMax        = 30 * time.Second
	defaultRetryMaxElapsed = time.Minute
	defaultCapacityMB      = 1024
	defaultMaxFileMB       = 64
	defaultMaxFiles        = 10
	defaultRetention       = tracestore.DefaultRetention
	defaultMaxMB           = tracestore.DefaultMaxBytes >> 20
)

// Examples quoted by validation errors.
const (
	exampleDatawayURL = "https://openway.guance.com?token=tkn_xxx"
	exampleInfluxURL  = "http://127.0.0.1:8086"
)

// DefaultConfig returns the defaults used when apmkit.conf has no [io] table. It has no
// outputs: New then adds the file output under DATA_DIR/out, and the explorer's local
// output (WithImplicitOutputs).
func DefaultConfig() Config {
	return Config{
		Explorer:       true,
		QueueMaxMB:     defaultQueueMaxMB,
		FeedTimeout:    defaultFeedTimeout,
		BatchMaxPoints: defaultBatchMaxPoints,
		BatchMaxBytes:  defaultBatchMaxBytes,
		FlushInterval:  defaultFlushInterval,
		StopTimeout:    defaultStopTimeout,
	}
}

// Validate fills unset (zero) values with their defaults, names unnamed outputs, then checks
// everything. The error lists every problem, one per line, each naming its key and what is
// allowed, so a user fixes a config in one round.
func (c *Config) Validate() error {
	c.applyDefaults()
	errs := c.validateTop()
	seen := map[string]int{}
	local := -1
	for i := range c.Outputs {
		o := &c.Outputs[i]
		errs = append(errs, o.validate(i)...)
		if o.Type == TypeLocal {
			if local >= 0 {
				errs = append(errs, fmt.Errorf("%s: type local: io.outputs[%d] is local already; the explorer reads one store", o.where(i), local))
			}
			local = i
		}
		if first, dup := seen[o.Name]; dup && o.Name != "" {
			errs = append(errs, fmt.Errorf("%s: name %q: duplicate of io.outputs[%d]; names must be unique", o.where(i), o.Name, first))
			continue
		}
		seen[o.Name] = i
	}
	return errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	setDefault(&c.QueueMaxMB, defaultQueueMaxMB)
	setDefault(&c.FeedTimeout, defaultFeedTimeout)
	setDefault(&c.BatchMaxPoints, defaultBatchMaxPoints)
	setDefault(&c.BatchMaxBytes, defaultBatchMaxBytes)
	setDefault(&c.FlushInterval, defaultFlushInterval)
	setDefault(&c.StopTimeout, defaultStopTimeout)
	for i := range c.Outputs {
		c.Outputs[i].applyDefaults()
	}
	c.nameOutputs()
}

// setDefault replaces a zero value; negative values are left for Validate to report.
func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// nameOutputs gives unnamed outputs their type as name, then type-2, type-3... skipping
// names the user chose, so `[[io.outputs]] type="dataway"` twice gives dataway, dataway-2.
func (c *Config) nameOutputs() {
	taken := map[string]bool{}
	for _, o := range c.Outputs {
		if o.Name != "" {
			taken[o.Name] = true
		}
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if o.Name != "" || !knownType(o.Type) {
			continue
		}
		name := o.Type
		for n := 2; taken[name]; n++ {
			name = fmt.Sprintf("%s-%d", o.Type, n)
		}
		o.Name = name
		taken[name] = true
	}
}

// applyDefaults fills an output's unset values. The name needs the other outputs and is set
// by Config.Validate; the file output's dir needs the data dir and is set by New.
func (o *OutputConfig) applyDefaults() {
	setDefault(&o.Timeout, defaultHTTPTimeout)
	if o.Gzip == nil {
		gz := defaultGzip
		o.Gzip = &gz
	}
	setDefault(&o.GzipLevel, defaultGzipLevel)
	setDefault(&o.QueueMaxBatches, defaultQueueMaxBatches)
	setDefault(&o.MaxInFlight, defaultMaxInFlight)
	setDefault(&o.RetryInitial, defaultRetryInitial)
	setDefault(&o.RetryMax, defaultRetryMax)
	setDefault(&o.RetryMaxElapsed, defaultRetryMaxElapsed)
	setDefault(&o.CapacityMB, defaultCapacityMB)
	setDefault(&o.MaxFileMB, defaultMaxFileMB)
	setDefault(&o.MaxFiles, defaultMaxFiles)
	setDefault(&o.Retention, defaultRetention)
	setDefault(&o.MaxMB, defaultMaxMB)
	if o.Type == TypeOTLP && o.Protocol == "" {
		o.Protocol = ProtocolGRPC
	}
}

// inFlight is the number of sender goroutines: file outputs append to one file per
// category, and a local output writes its store one batch at a time (concurrent badger
// batches would only contend), so they write one batch at a time whatever max_in_flight
// says.
func (o *OutputConfig) inFlight() int {
	if o.Type == TypeFile || o.Type == TypeLocal {
		return 1
	}
	return o.MaxInFlight
}

// WithImplicitOutputs returns the outputs apmkit writes to: the configured ones, plus the
// file output under DATA_DIR/out when none is configured, plus the explorer's local output
// when Explorer is on and none is configured; file and local outputs without a dir get
// theirs under dataDir. Defaults are not filled (Validate does).
func (c *Config) WithImplicitOutputs(dataDir string) []OutputConfig {
	outs := append([]OutputConfig(nil), c.Outputs...)
	if len(outs) == 0 {
		outs = append(outs, OutputConfig{Type: TypeFile})
	}
	if c.Explorer && !slices.ContainsFunc(outs, func(o OutputConfig) bool { return o.Type == TypeLocal }) {
		outs = append(outs, OutputConfig{Type: TypeLocal, Categories: []string{point.Metric.String(), point.Tracing.String()}})
	}
	for i := range outs {
		o := &outs[i]
		switch {
		case o.Dir != "":
		case o.Type == TypeFile:
			o.Dir = filepath.Join(dataDir, "out")
		case o.Type == TypeLocal:
			o.Dir = filepath.Join(dataDir, "explorer")
		}
	}
	return outs
}

// GzipEnabled reports whether request bodies are compressed (true when unset).
func (o *OutputConfig) GzipEnabled() bool { return o.Gzip == nil || *o.Gzip }

func (c *Config) validateTop() []error {
	var errs []error
	errs = appendIf(errs, positive("io.queue_max_mb", c.QueueMaxMB))
	errs = appendIf(errs, positive("io.feed_timeout", c.FeedTimeout))
	errs = appendIf(errs, positive("io.batch_max_points", c.BatchMaxPoints))
	errs = appendIf(errs, positive("io.batch_max_bytes", c.BatchMaxBytes))
	errs = appendIf(errs, positive("io.flush_interval", c.FlushInterval))
	errs = appendIf(errs, positive("io.stop_timeout", c.StopTimeout))
	return errs
}

func positive[T int | time.Duration](key string, v T) error {
	if v > 0 {
		return nil
	}
	return fmt.Errorf("%s: must be > 0 (or unset for the default), got %v", key, v)
}

func appendIf(errs []error, err error) []error {
	if err != nil {
		return append(errs, err)
	}
	return errs
}

// where names an output in errors: io.outputs[1] (dataway).
func (o *OutputConfig) where(i int) string {
	if o.Name == "" {
		return fmt.Sprintf("io.outputs[%d]", i)
	}
	return fmt.Sprintf("io.outputs[%d] (%s)", i, o.Name)
}

func (o *OutputConfig) validate(i int) []error {
	at := o.where(i)
	if o.Type == "" {
		return []error{fmt.Errorf("%s: type: required, allowed: %s", at, allowedTypes)}
	}
	if !knownType(o.Type) {
		return []error{fmt.Errorf("%s: type %q: unknown, allowed: %s", at, o.Type, allowedTypes)}
	}
	var errs []error
	if err := validName(o.Name); err != nil {
		errs = append(errs, fmt.Errorf("%s: name %q: %w", at, o.Name, err))
	}
	for _, c := range o.Categories {
		if _, err := point.ParseCategory(c); err != nil {
			errs = append(errs, fmt.Errorf("%s: categories: %w", at, err))
		}
	}
	for k := range o.Headers {
		if !validHeaderName(k) {
			errs = append(errs, fmt.Errorf("%s: headers: %q is not a valid HTTP header name", at, k))
		}
	}
	errs = append(errs, o.validateLimits(at)...)
	errs = append(errs, o.validateType(at)...)
	return errs
}

func (o *OutputConfig) validateLimits(at string) []error {
	var errs []error
	errs = appendIf(errs, positive(at+": timeout", o.Timeout))
	errs = appendIf(errs, positive(at+": queue_max_batches", o.QueueMaxBatches))
	errs = appendIf(errs, positive(at+": max_in_flight", o.MaxInFlight))
	if o.GzipLevel < 1 || o.GzipLevel > 9 {
		errs = append(errs, fmt.Errorf("%s: gzip_level: must be 1 (fastest) to 9 (smallest), or unset for the default 1, got %d", at, o.GzipLevel))
	}
	errs = appendIf(errs, positive(at+": retry_initial", o.RetryInitial))
	errs = appendIf(errs, positive(at+": retry_max", o.RetryMax))
	errs = appendIf(errs, positive(at+": retry_max_elapsed", o.RetryMaxElapsed))
	errs = appendIf(errs, positive(at+": capacity_mb", o.CapacityMB))
	errs = appendIf(errs, positive(at+": max_file_mb", o.MaxFileMB))
	errs = appendIf(errs, positive(at+": max_files", o.MaxFiles))
	errs = appendIf(errs, positive(at+": retention", o.Retention))
	errs = appendIf(errs, positive(at+": max_mb", o.MaxMB))
	if o.RetryInitial > 0 && o.RetryMax > 0 && o.RetryMax < o.RetryInitial {
		errs = append(errs, fmt.Errorf("%s: retry_max: must be >= retry_initial (%v), got %v", at, o.RetryInitial, o.RetryMax))
	}
	return errs
}

func (o *OutputConfig) validateType(at string) []error {
	var errs []error
	required := func(key, val, hint string) {
		if val == "" {
			errs = append(errs, fmt.Errorf("%s: %s: required for %s outputs%s", at, key, o.Type, hint))
		}
	}
	switch o.Type {
	case TypeDataway:
		if err := validateHTTPURL("url", o.URL, exampleDatawayURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		} else if u, _ := url.Parse(o.URL); u.Query().Get("token") == "" {
			errs = append(errs, fmt.Errorf("%s: url: missing the token query, e.g. %s", at, exampleDatawayURL))
		} else if p, ok := secret.Placeholder(u.Query().Get("token")); ok {
			errs = append(errs, fmt.Errorf("%s: url: the token is a placeholder (%s), not a DataWay token: put your workspace's token (tkn_...) in the url", at, p))
		}
	case TypeInfluxDB:
		errs = appendIf(errs, prefixErr(at, validateHTTPURL("url", o.URL, exampleInfluxURL)))
		required("database", o.Database, " (db=)")
	case TypeInfluxDB2:
		errs = appendIf(errs, prefixErr(at, validateHTTPURL("url", o.URL, exampleInfluxURL)))
		required("org", o.Org, "")
		required("bucket", o.Bucket, "")
		required("token", o.Token.Reveal(), " (an API token with write access to the bucket)")
		if p, ok := secret.Placeholder(o.Token.Reveal()); ok {
			errs = append(errs, fmt.Errorf("%s: token: a placeholder (%s), not an API token", at, p))
		}
	case TypeOTLP:
		errs = append(errs, o.validateOTLP(at)...)
	}
	if o.Type != TypeOTLP {
		errs = append(errs, o.onlyOTLP(at)...)
	}
	return errs
}

func prefixErr(at string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", at, err)
}

// validateHTTPURL checks the URL of key; it never quotes the URL back: it may hold a token.
func validateHTTPURL(key, raw, example string) error {
	if raw == "" {
		return fmt.Errorf("%s: required, e.g. %s", key, example)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: not a valid URL (%v), e.g. %s", key, err, example)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme %q not supported, use http or https, e.g. %s", key, u.Scheme, example)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: missing host, e.g. %s", key, example)
	}
	return nil
}

// validName keeps output names safe as a folder name and a metric label.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return errors.New("must be non-empty and not start with '.'")
	}
	for _, r := range name {
		ok := r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return errors.New("only letters, digits, '-', '_' and '.' are allowed")
		}
	}
	return nil
}

// validHeaderName checks RFC 9110 token characters.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// categorySet resolves Categories (validated) to a membership test; empty means all (otlp:
// all it takes).
func (o *OutputConfig) categorySet() map[point.Category]bool {
	if o.Type == TypeOTLP && len(o.Categories) == 0 {
		return map[point.Category]bool{point.Metric: true, point.Tracing: true}
	}
	set := map[point.Category]bool{}
	for _, name := range o.Categories {
		if c, err := point.ParseCategory(name); err == nil {
			set[c] = true
		}
	}
	if len(set) == 0 {
		for _, c := range point.Categories {
			set[c] = true
		}
	}
	return set
}
