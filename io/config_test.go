package io

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{
		QueueMaxMB:     16,
		FeedTimeout:    5 * time.Second,
		BatchMaxPoints: 1000,
		BatchMaxBytes:  4 << 20,
		FlushInterval:  time.Second,
		StopTimeout:    10 * time.Second,
	}
	if c.QueueMaxMB != want.QueueMaxMB || c.FeedTimeout != want.FeedTimeout ||
		c.BatchMaxPoints != want.BatchMaxPoints || c.BatchMaxBytes != want.BatchMaxBytes ||
		c.FlushInterval != want.FlushInterval || c.StopTimeout != want.StopTimeout || c.Outputs != nil || !c.Explorer {
		t.Fatalf("DefaultConfig() = %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
}

func TestZeroConfigGetsDefaults(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.QueueMaxMB != 16 || c.StopTimeout != 10*time.Second || c.BatchMaxBytes != 4<<20 {
		t.Fatalf("zero config not defaulted: %+v", c)
	}
}

func TestOutputDefaults(t *testing.T) {
	o := OutputConfig{Type: TypeDataway}
	o.applyDefaults()
	if o.Timeout != 30*time.Second || !o.GzipEnabled() || o.RetryInitial != time.Second ||
		o.RetryMax != 30*time.Second || o.RetryMaxElapsed != time.Minute || o.CapacityMB != 1024 ||
		o.MaxFileMB != 64 || o.MaxFiles != 10 || o.QueueMaxBatches != 16 || o.GzipLevel != 1 || o.MaxInFlight != 2 {
		t.Fatalf("output defaults: %+v", o)
	}
	f := OutputConfig{Type: TypeFile, MaxInFlight: 4}
	if f.inFlight() != 1 || o.inFlight() != 2 {
		t.Fatalf("senders: file %d (want 1 whatever max_in_flight says), dataway %d (want 2)", f.inFlight(), o.inFlight())
	}
	off := false
	o = OutputConfig{Type: TypeInfluxDB, Gzip: &off}
	o.applyDefaults()
	if o.GzipEnabled() {
		t.Fatal("an explicit gzip = false was overwritten by the default")
	}
}

func TestOutputNames(t *testing.T) {
	c := Config{Outputs: []OutputConfig{
		{Type: TypeDataway, URL: "https://a.example?token=tkn_a"},
		{Type: TypeDataway, URL: "https://b.example?token=tkn_b"},
		{Type: TypeDataway, URL: "https://c.example?token=tkn_c", Name: "dataway-2"},
		{Type: TypeFile},
		{Type: TypeDataway, URL: "https://d.example?token=tkn_d"},
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range c.Outputs {
		got = append(got, o.Name)
	}
	want := "dataway dataway-3 dataway-2 file dataway-4"
	if strings.Join(got, " ") != want {
		t.Fatalf("names = %v, want %s", got, want)
	}
}

func TestValidateErrors(t *testing.T) {
	dw := func(o OutputConfig) Config {
		o.Type = TypeDataway
		if o.URL == "" {
			o.URL = "https://openway.guance.com?token=tkn_1"
		}
		return Config{Outputs: []OutputConfig{o}}
	}
	otlpOut := func(o OutputConfig) Config {
		o.Type = TypeOTLP
		return Config{Outputs: []OutputConfig{o}}
	}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative queue", Config{QueueMaxMB: -1}, "io.queue_max_mb: must be > 0 (or unset for the default), got -1"},
		{"gzip level too high", dw(OutputConfig{GzipLevel: 10}),
			"io.outputs[0] (dataway): gzip_level: must be 1 (fastest) to 9 (smallest), or unset for the default 1, got 10"},
		{"negative in flight", dw(OutputConfig{MaxInFlight: -1}),
			"io.outputs[0] (dataway): max_in_flight: must be > 0 (or unset for the default), got -1"},
		{"negative feed timeout", Config{FeedTimeout: -time.Second}, "io.feed_timeout: must be > 0 (or unset for the default), got -1s"},
		{"negative batch bytes", Config{BatchMaxBytes: -5}, "io.batch_max_bytes: must be > 0 (or unset for the default), got -5"},
		{"no type", Config{Outputs: []OutputConfig{{}}}, "io.outputs[0]: type: required, allowed: file, dataway, influxdb, influxdb2, otlp, local"},
		{"unknown type", Config{Outputs: []OutputConfig{{Type: "kafka"}}}, `io.outputs[0]: type "kafka": unknown, allowed: file, dataway, influxdb, influxdb2, otlp, local`},
		{"dataway no url", Config{Outputs: []OutputConfig{{Type: TypeFile}, {Type: TypeDataway}}},
			"io.outputs[1] (dataway): url: required, e.g. https://openway.guance.com?token=tkn_xxx"},
		{"dataway no token", dw(OutputConfig{URL: "https://openway.guance.com"}),
			"io.outputs[0] (dataway): url: missing the token query, e.g. https://openway.guance.com?token=tkn_xxx"},
		{"dataway bad scheme", dw(OutputConfig{URL: "ftp://openway.guance.com?token=tkn_1"}),
			`io.outputs[0] (dataway): url: scheme "ftp" not supported, use http or https, e.g. https://openway.guance.com?token=tkn_xxx`},
		{"dataway no host", dw(OutputConfig{URL: "https://?token=tkn_1"}),
			"io.outputs[0] (dataway): url: missing host, e.g. https://openway.guance.com?token=tkn_xxx"},
		{"url unparsable, token not echoed", dw(OutputConfig{URL: "https://open way.com?token=tkn_secret"}),
			`io.outputs[0] (dataway): url: not a valid URL (invalid character " " in host name), e.g. https://openway.guance.com?token=tkn_xxx`},
		{"unknown category", dw(OutputConfig{Categories: []string{"metric", "rum"}}),
			`io.outputs[0] (dataway): categories: unknown category "rum" (allowed: metric, tracing, logging, object)`},
		{"bad name", dw(OutputConfig{Name: "../etc"}),
			`io.outputs[0] (../etc): name "../etc": must be non-empty and not start with '.'`},
		{"bad name chars", dw(OutputConfig{Name: "a/b"}),
			`io.outputs[0] (a/b): name "a/b": only letters, digits, '-', '_' and '.' are allowed`},
		{"duplicate names", Config{Outputs: []OutputConfig{
			{Type: TypeFile, Name: "out"}, {Type: TypeFile, Name: "out"}}},
			`io.outputs[1] (out): name "out": duplicate of io.outputs[0]; names must be unique`},
		{"influxdb no database", Config{Outputs: []OutputConfig{{Type: TypeInfluxDB, URL: "http://127.0.0.1:8086"}}},
			"io.outputs[0] (influxdb): database: required for influxdb outputs (db=)"},
		{"influxdb no url", Config{Outputs: []OutputConfig{{Type: TypeInfluxDB, Database: "apm"}}},
			"io.outputs[0] (influxdb): url: required, e.g. http://127.0.0.1:8086"},
		{"influxdb2 no token", Config{Outputs: []OutputConfig{{Type: TypeInfluxDB2, URL: "http://127.0.0.1:8086", Org: "o", Bucket: "b"}}},
			"io.outputs[0] (influxdb2): token: required for influxdb2 outputs (an API token with write access to the bucket)"},
		{"influxdb2 no org", Config{Outputs: []OutputConfig{{Type: TypeInfluxDB2, URL: "http://127.0.0.1:8086", Bucket: "b", Token: "t"}}},
			"io.outputs[0] (influxdb2): org: required for influxdb2 outputs"},
		{"retry max below initial", dw(OutputConfig{RetryInitial: time.Minute, RetryMax: time.Second}),
			"io.outputs[0] (dataway): retry_max: must be >= retry_initial (1m0s), got 1s"},
		{"negative capacity", dw(OutputConfig{CapacityMB: -1}),
			"io.outputs[0] (dataway): capacity_mb: must be > 0 (or unset for the default), got -1"},
		{"negative max files", Config{Outputs: []OutputConfig{{Type: TypeFile, MaxFiles: -2}}},
			"io.outputs[0] (file): max_files: must be > 0 (or unset for the default), got -2"},
		{"bad header", dw(OutputConfig{Headers: map[string]string{"X Bad": "1"}}),
			`io.outputs[0] (dataway): headers: "X Bad" is not a valid HTTP header name`},
		{"otlp no endpoint", otlpOut(OutputConfig{}), "io.outputs[0] (otlp): endpoint: required, e.g. 127.0.0.1:4317"},
		{"otlp grpc endpoint not host:port", otlpOut(OutputConfig{Endpoint: "collector"}),
			"io.outputs[0] (otlp): endpoint: not host:port, e.g. 127.0.0.1:4317"},
		{"otlp grpc endpoint bad scheme", otlpOut(OutputConfig{Endpoint: "ftp://collector:4317"}),
			"io.outputs[0] (otlp): endpoint: not host:port nor http(s)://host:port, e.g. 127.0.0.1:4317"},
		{"otlp http endpoint not a URL", otlpOut(OutputConfig{Protocol: ProtocolHTTP, Endpoint: "127.0.0.1:4318"}),
			"io.outputs[0] (otlp): endpoint: not a valid URL (first path segment in URL cannot contain colon), e.g. http://127.0.0.1:4318"},
		{"otlp unknown protocol", otlpOut(OutputConfig{Protocol: "http/json", Endpoint: "127.0.0.1:4317"}),
			`io.outputs[0] (otlp): protocol "http/json": allowed: grpc, http/protobuf`},
		{"otlp url instead of endpoint", otlpOut(OutputConfig{Endpoint: "127.0.0.1:4317", URL: "http://x"}),
			"io.outputs[0] (otlp): url: otlp outputs take endpoint instead"},
		{"otlp logging", otlpOut(OutputConfig{Endpoint: "127.0.0.1:4317", Categories: []string{"tracing", "logging"}}),
			"io.outputs[0] (otlp): categories: logging: otlp outputs take metric and tracing"},
		{"otlp cert without key", otlpOut(OutputConfig{Endpoint: "127.0.0.1:4317", TLSCertFile: "c.pem"}),
			"io.outputs[0] (otlp): tls_cert_file and tls_key_file: set both or neither"},
		{"otlp keys on another output", dw(OutputConfig{Endpoint: "x:1", Insecure: true}),
			"io.outputs[0] (dataway): insecure: only otlp outputs take it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			found := false
			for _, l := range lines {
				found = found || l == tc.want
			}
			if !found {
				t.Fatalf("Validate() =\n%s\nwant a line\n%s", err, tc.want)
			}
			if strings.Contains(err.Error(), "tkn_secret") {
				t.Fatalf("error echoes the token: %s", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{QueueMaxMB: -1, Outputs: []OutputConfig{{Type: "x"}, {Type: TypeInfluxDB}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 4 {
		t.Fatalf("want 4 problems (queue, type, url, database), got %d:\n%s", n, err)
	}
}

func TestValidConfigs(t *testing.T) {
	c := Config{Outputs: []OutputConfig{
		{Type: TypeDataway, URL: "https://openway.guance.com?token=tkn_1", Categories: []string{"tracing", "metric"}},
		{Type: TypeInfluxDB, URL: "http://127.0.0.1:8086", Database: "apm", Username: "u", Password: "p"},
		{Type: TypeInfluxDB2, URL: "http://127.0.0.1:8086", Org: "o", Bucket: "b", Token: "t"},
		{Type: TypeFile, Dir: "/tmp/x", Headers: map[string]string{"X-Ok": "1"}},
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestOutputsExampleIsValid keeps the sample config's commented example loadable.
func TestOutputsExampleIsValid(t *testing.T) {
	f, _ := reflect.TypeOf(Config{}).FieldByName("Outputs")
	example := f.Tag.Get("example")
	var file struct {
		IO Config `toml:"io"`
	}
	md, err := toml.Decode("[io]\n"+example, &file)
	if err != nil {
		t.Fatalf("example does not parse: %v\n%s", err, example)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("example has unknown keys %v", und)
	}
	if len(file.IO.Outputs) != 4 {
		t.Fatalf("example outputs: %+v", file.IO.Outputs)
	}
	if err := file.IO.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
}

// TestDurationsAndGzipFromTOML: durations are written as strings and gzip = false sticks.
func TestDurationsAndGzipFromTOML(t *testing.T) {
	var file struct {
		IO Config `toml:"io"`
	}
	src := `[io]
feed_timeout = "250ms"
[[io.outputs]]
type = "influxdb"
url = "http://127.0.0.1:8086"
database = "apm"
gzip = false
retry_max_elapsed = "2m"
`
	if _, err := toml.Decode(src, &file); err != nil {
		t.Fatal(err)
	}
	if err := file.IO.Validate(); err != nil {
		t.Fatal(err)
	}
	o := file.IO.Outputs[0]
	if file.IO.FeedTimeout != 250*time.Millisecond || o.RetryMaxElapsed != 2*time.Minute || o.GzipEnabled() || o.Timeout != 30*time.Second {
		t.Fatalf("decoded %+v / %+v", file.IO, o)
	}
}
