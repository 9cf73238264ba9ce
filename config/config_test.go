package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/apmkit/apmkit/inputs"
)

// testConfig exercises every kind of option the loader and the env overlay handle.
type testConfig struct {
	Address  string              `toml:"address" doc:"Listen address." env:"ADDRESS"`
	Enabled  bool                `toml:"enabled" doc:"On or off." env:"ENABLED"`
	Rate     float64             `toml:"rate" doc:"A ratio." env:"RATE"`
	Count    int                 `toml:"count" doc:"A number." env:"COUNT"`
	Wait     time.Duration       `toml:"wait" doc:"A duration." env:"WAIT"`
	Paths    []string            `toml:"paths" doc:"A list." env:"PATHS"`
	Tags     map[string]string   `toml:"tags" doc:"Tags." env:"TAGS" example:"a = \"b\""`
	Rules    map[string][]string `toml:"rules" doc:"Rules." env:"RULES" example:"\"*\" = [\"x\"]"`
	Storage  testStorage         `toml:"storage" doc:"Storage." env:"STORAGE"`
	Nested   testNested          `toml:"nested" doc:"A nested table."`
	Optional string              `toml:"optional" doc:"Optional." example:"\"/etc/x\""`
}

type testStorage struct {
	Path     string `toml:"path" json:"storage" doc:"Where."`
	Capacity int    `toml:"capacity" json:"capacity" doc:"MiB."`
}

type testNested struct {
	Rate float64 `toml:"rate" doc:"Nested rate." env:"SAMPLER"`
}

func (c *testConfig) Validate() error {
	var errs []error
	if c.Rate < 0 || c.Rate > 1 {
		errs = append(errs, errors.New("rate: must be within 0..1"))
	}
	if c.Nested.Rate < 0 || c.Nested.Rate > 1 {
		errs = append(errs, errors.New("nested.rate: must be within 0..1"))
	}
	return errors.Join(errs...)
}

func (c *testConfig) ListenAddresses() map[string]string {
	return map[string]string{"address": c.Address}
}

func defaultTestConfig() inputs.Config {
	return &testConfig{Address: "127.0.0.1:1", Rate: 1, Count: 3, Wait: time.Second, Paths: []string{}, Storage: testStorage{Path: "./s", Capacity: 10}}
}

func init() {
	inputs.Add(inputs.Plugin{
		Name:      "testin",
		Doc:       "Test input.",
		NewConfig: defaultTestConfig,
		New:       func(inputs.Config) (inputs.Input, error) { return nil, errors.New("not for running") },
	})
}

func writeFile(t *testing.T, dir, rel, text string) string {
	t.Helper()
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t *testing.T, dir string, env ...string) (*Config, error) {
	t.Helper()
	return Load(Options{ConfDir: dir, Environ: append([]string{"PATH=/bin"}, env...)})
}

func mustLoad(t *testing.T, dir string, env ...string) *Config {
	t.Helper()
	cfg, err := load(t, dir, env...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testIn(t *testing.T, in Instance) *testConfig {
	t.Helper()
	c, ok := in.Config.(*testConfig)
	if !ok {
		t.Fatalf("instance %s is %T", in.Source, in.Config)
	}
	return c
}

func TestEmbeddedDefaults(t *testing.T) {
	cfg := mustLoad(t, filepath.Join(t.TempDir(), "missing"))
	if !reflect.DeepEqual(cfg.Main, DefaultMain()) {
		t.Fatalf("main = %+v", cfg.Main)
	}
	if cfg.MainFile != "" || len(cfg.Inputs) != 0 {
		t.Fatalf("file %q inputs %v", cfg.MainFile, cfg.Inputs)
	}
}

func TestMainFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "apmkit.conf", `
hostname = "node-1"
data_dir = "/var/lib/apmkit"
[http_api]
  listen = "0.0.0.0:9530"
[log]
  level = "debug"
  format = "json"
[global_tags]
  env = "prod"
[cache]
  capacity_mb = 10
[io]
  batch_max_points = 500
[[io.outputs]]
  type = "influxdb"
  url = "http://127.0.0.1:8086"
  database = "apm"
`)
	cfg := mustLoad(t, dir)
	m := cfg.Main
	if m.Hostname != "node-1" || m.DataDir != "/var/lib/apmkit" || m.HTTPAPI.Listen != "0.0.0.0:9530" ||
		m.Log.Level != "debug" || m.Log.Format != "json" || m.GlobalTags["env"] != "prod" ||
		m.Cache.CapacityMB != 10 || m.IO.BatchMaxPoints != 500 {
		t.Fatalf("main = %+v", m)
	}
	if len(m.IO.Outputs) != 1 || m.IO.Outputs[0].Database != "apm" {
		t.Fatalf("outputs = %+v", m.IO.Outputs)
	}
	if cfg.MainFile != filepath.Join(dir, "apmkit.conf") {
		t.Fatalf("MainFile %q", cfg.MainFile)
	}
}

func TestInputFilesAndInstances(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "deep/er/two.conf", `
[[inputs.testin]]
  address = "127.0.0.1:2"
  rate = 0.5
  [inputs.testin.storage]
    path = "/tmp/x"
  [inputs.testin.rules]
    "*" = ["a.*"]
[[inputs.testin]]
  address = "127.0.0.1:3"
`)
	writeFile(t, dir, "testin/testin.conf.sample", "this is not read")
	cfg := mustLoad(t, dir)
	if len(cfg.Inputs) != 2 {
		t.Fatalf("inputs %v", cfg.Inputs)
	}
	a, b := testIn(t, cfg.Inputs[0]), testIn(t, cfg.Inputs[1])
	if a.Address != "127.0.0.1:2" || a.Rate != 0.5 || a.Storage.Path != "/tmp/x" || a.Storage.Capacity != 10 || a.Rules["*"][0] != "a.*" {
		t.Fatalf("first = %+v", a)
	}
	if b.Address != "127.0.0.1:3" || b.Count != 3 {
		t.Fatalf("second kept no defaults: %+v", b)
	}
	if !strings.Contains(cfg.Inputs[1].Source, "two.conf: [[inputs.testin]] #2") {
		t.Fatalf("source %q", cfg.Inputs[1].Source)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, file, text string
		env              []string
		want             []string
	}{
		{"unknown main key", "apmkit.conf", "hostnme = \"x\"\n", nil,
			[]string{"apmkit.conf", `unknown key "hostnme" in the top level`, "allowed: hostname, data_dir"}},
		{"unknown nested main key", "apmkit.conf", "[log]\nlevl = \"x\"\n", nil,
			[]string{"apmkit.conf", `unknown key "levl" in [log]`, "allowed: level, format"}},
		{"unknown output key", "apmkit.conf", "[[io.outputs]]\ntype = \"file\"\nurll = \"x\"\n", nil,
			[]string{"apmkit.conf", `unknown key "urll" in [io.outputs]`, "url"}},
		{"bad log level", "apmkit.conf", "[log]\nlevel = \"loud\"\n", nil,
			[]string{"apmkit.conf", `log.level: "loud" is not one of debug, info, warn, error`}},
		{"bad listen", "apmkit.conf", "[http_api]\nlisten = \"9529\"\n", nil,
			[]string{"http_api.listen", "host:port"}},
		{"wrong main type", "apmkit.conf", "data_dir = 5\n", nil,
			[]string{"apmkit.conf", "data_dir", "incompatible types"}},
		{"toml syntax", "x.conf", "[[inputs.testin]\n", nil,
			[]string{"x.conf:2: ", "expected end of table array name delimiter"}},
		{"wrong input type has a line", "x.conf", "[[inputs.testin]]\nrate = 1.0\naddress = 9991\n", nil,
			[]string{"x.conf:3: [[inputs.testin]] #1: ", "incompatible types", "address"}},
		{"bare integer duration in input", "x.conf", "[[inputs.testin]]\naddress = \"a:1\"\nwait = 120\n", nil,
			[]string{"x.conf:3: inputs.testin.wait: a bare integer is not a duration", `write a unit, e.g. "120s"`}},
		{"bare integer duration in main", "apmkit.conf", "[io]\nflush_interval = 5\n", nil,
			[]string{"apmkit.conf:2: io.flush_interval", `"5s"`}},
		{"env nested value fails validation", "x.conf", "[[inputs.testin]]\n", []string{"ENV_INPUT_TESTIN_SAMPLER=2"},
			[]string{"ENV_INPUT_TESTIN_SAMPLER=2: nested.rate"}},
		{"env listen", "", "", []string{"ENV_HTTP_LISTEN=9529"},
			[]string{"ENV_HTTP_LISTEN=9529: http_api.listen"}},
		{"env dataway masked", "", "", []string{"ENV_DATAWAY=ftp://h?token=tkn_0123456789abcdef"},
			[]string{"ENV_DATAWAY=ftp://h?token=tkn_****cdef: io.outputs[0]"}},
		{"placeholder dataway token", "", "", []string{"ENV_DATAWAY=https://openway.guance.com?token=tkn_REPLACE_ME"},
			[]string{"ENV_DATAWAY=", "placeholder (REPLACE_ME)"}},
		{"env otlp protocol", "", "", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"},
			[]string{`OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=http/json: io.outputs[0] (otlp): protocol "http/json": allowed: grpc, http/protobuf`}},
		{"env otlp headers", "", "", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4317", "OTEL_EXPORTER_OTLP_HEADERS=api-key"},
			[]string{`OTEL_EXPORTER_OTLP_HEADERS: "****" is not key=value (format: key1=value1,key2=value2)`}},
		{"same address twice", "x.conf", "[[inputs.testin]]\naddress = \"127.0.0.1:7\"\n[[inputs.testin]]\naddress = \"0.0.0.0:7\"\n", nil,
			[]string{"x.conf: [[inputs.testin]] #1 address", "x.conf: [[inputs.testin]] #2 address", `"0.0.0.0:7"`, "two inputs listen on the same address"}},
		{"same address from the environment", "x.conf", "[[inputs.testin]]\n[[inputs.testin]]\n", []string{"ENV_INPUT_TESTIN_ADDRESS=127.0.0.1:8"},
			[]string{"#1 address (ENV_INPUT_TESTIN_ADDRESS=127.0.0.1:8)", "#2 address (ENV_INPUT_TESTIN_ADDRESS=127.0.0.1:8)"}},
		{"unknown input key", "x.conf", "[[inputs.testin]]\nadress = \"x\"\n", nil,
			[]string{"x.conf", `unknown key "adress" in [[inputs.testin]]`, "allowed: address, enabled, rate"}},
		{"unknown nested input key", "x.conf", "[[inputs.testin]]\n[inputs.testin.storage]\npth = 1\n", nil,
			[]string{"x.conf", `unknown key "pth" in [inputs.testin.storage]`, "allowed: path, capacity"}},
		{"wrong input type", "x.conf", "[[inputs.testin]]\naddress = 9991\n", nil,
			[]string{"x.conf", "[[inputs.testin]] #1", "address", "incompatible types"}},
		{"invalid input value", "x.conf", "[[inputs.testin]]\nrate = 2.0\n", nil,
			[]string{"x.conf: [[inputs.testin]] #1: rate: must be within 0..1"}},
		{"unknown input", "x.conf", "[[inputs.nope]]\n", nil,
			[]string{"x.conf", "[[inputs.nope]]: unknown input", "testin"}},
		{"stray key in input file", "x.conf", "address = \"x\"\n", nil,
			[]string{"x.conf", `unknown key "address" in the top level (allowed: inputs)`}},
		{"env option typo", "", "", []string{"ENV_INPUT_TESTIN_ADRESS=x"},
			[]string{"ENV_INPUT_TESTIN_ADRESS: unknown option for input testin", "ENV_INPUT_TESTIN_ADDRESS"}},
		{"env bad bool", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_ENABLED=yes please"},
			[]string{"ENV_INPUT_TESTIN_ENABLED", "not a boolean"}},
		{"env bad float", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_RATE=half"},
			[]string{"ENV_INPUT_TESTIN_RATE", "not a number"}},
		{"env bad duration", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_WAIT=5"},
			[]string{"ENV_INPUT_TESTIN_WAIT", "not a duration"}},
		{"env bad JSON", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_TAGS={a:1}"},
			[]string{"ENV_INPUT_TESTIN_TAGS", "invalid JSON"}},
		{"env JSON unknown field", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", `ENV_INPUT_TESTIN_STORAGE={"path":"x"}`},
			[]string{"ENV_INPUT_TESTIN_STORAGE", `unknown field "path"`}},
		{"env value fails validation", "", "", []string{"ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_RATE=3"},
			[]string{"ENV_INPUT_TESTIN_RATE=3: rate: must be within 0..1"}},
		{"env bad host tags", "", "", []string{"ENV_GLOBAL_HOST_TAGS=a=1,b"},
			[]string{"ENV_GLOBAL_HOST_TAGS", `"b" is not key=value`}},
		{"env bad log level", "", "", []string{"ENV_LOG_LEVEL=chatty"},
			[]string{`ENV_LOG_LEVEL=chatty: log.level: "chatty"`}},
		{"env redis url masked", "", "", []string{"ENV_CACHE_REDIS_URL=redis+sentinel://:s3cret-pw@s1:26379"},
			[]string{"ENV_CACHE_REDIS_URL=redis+sentinel://:****@s1:26379: cache.redis_url: redis+sentinel://:****@s1:26379: a Sentinel URL needs ?master_name="}},
		{"bad redis options", "apmkit.conf", "[cache]\nredis_key_prefix = \"{x}\"\nredis_timeout = \"0s\"\n", nil,
			[]string{"apmkit.conf: cache.redis_key_prefix", "cache.redis_timeout: 0s must be > 0"}},
		{"env inputs syntax", "", "", []string{"ENV_DATAKIT_INPUTS=[[inputs.testin]"},
			[]string{"ENV_DATAKIT_INPUTS"}},
		{"both env inputs differ", "", "", []string{"ENV_DATAKIT_INPUTS=[[inputs.testin]]", "ENV_APMKIT_INPUTS=[[inputs.testin]]\n[[inputs.testin]]"},
			[]string{"both ENV_DATAKIT_INPUTS and ENV_APMKIT_INPUTS"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.file != "" {
				writeFile(t, dir, c.file, c.text)
			}
			_, err := load(t, dir, c.env...)
			if err == nil {
				t.Fatal("loaded a bad config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultEnabledInputs(t *testing.T) {
	cfg := mustLoad(t, t.TempDir(), "ENV_DEFAULT_ENABLED_INPUTS=cpu, mem testin,testin")
	if len(cfg.Inputs) != 1 || cfg.Inputs[0].Plugin != "testin" {
		t.Fatalf("inputs %+v", cfg.Inputs)
	}
	if got := testIn(t, cfg.Inputs[0]); !reflect.DeepEqual(got, defaultTestConfig()) {
		t.Fatalf("not the defaults: %+v", got)
	}
	if len(cfg.Warnings) != 2 || !strings.Contains(cfg.Warnings[0], `"cpu" is not part of apmkit`) {
		t.Fatalf("warnings %q", cfg.Warnings)
	}

	dir := t.TempDir()
	writeFile(t, dir, "t.conf", "[[inputs.testin]]\naddress = \"from-file\"\n")
	cfg = mustLoad(t, dir, "ENV_DEFAULT_ENABLED_INPUTS=testin")
	if len(cfg.Inputs) != 1 || testIn(t, cfg.Inputs[0]).Address != "from-file" {
		t.Fatalf("a file-configured input was enabled twice or replaced: %+v", cfg.Inputs)
	}
}

func TestInputEnvOptions(t *testing.T) {
	cfg := mustLoad(t, t.TempDir(),
		"ENV_DEFAULT_ENABLED_INPUTS=testin",
		"ENV_INPUT_TESTIN_ADDRESS=0.0.0.0:9991",
		"ENV_INPUT_TESTIN_ENABLED=true",
		"ENV_INPUT_TESTIN_RATE=0.25",
		"ENV_INPUT_TESTIN_COUNT=42",
		"ENV_INPUT_TESTIN_WAIT=1m30s",
		"ENV_INPUT_TESTIN_PATHS=/a.yml, /b.yml",
		`ENV_INPUT_TESTIN_TAGS={"k1":"v1","k2":"v2"}`,
		`ENV_INPUT_TESTIN_RULES={"*":["^/health"],"svc":["a","b"]}`,
		`ENV_INPUT_TESTIN_STORAGE={"storage":"/data/pp","capacity":5120}`,
		"ENV_INPUT_TESTIN_SAMPLER=0.1",
		"ENV_INPUT_OTHERTHING_X=ignored",
	)
	got := testIn(t, cfg.Inputs[0])
	want := &testConfig{
		Address: "0.0.0.0:9991", Enabled: true, Rate: 0.25, Count: 42, Wait: 90 * time.Second,
		Paths:   []string{"/a.yml", "/b.yml"},
		Tags:    map[string]string{"k1": "v1", "k2": "v2"},
		Rules:   map[string][]string{"*": {"^/health"}, "svc": {"a", "b"}},
		Storage: testStorage{Path: "/data/pp", Capacity: 5120},
		Nested:  testNested{Rate: 0.1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	cfg = mustLoad(t, t.TempDir(), "ENV_DEFAULT_ENABLED_INPUTS=testin", `ENV_INPUT_TESTIN_PATHS=["x","y"]`)
	if p := testIn(t, cfg.Inputs[0]).Paths; !reflect.DeepEqual(p, []string{"x", "y"}) {
		t.Fatalf("JSON list: %q", p)
	}
}

func TestEnvInputsFromConfigMap(t *testing.T) {
	doc := "[[inputs.testin]]\naddress = \"cm-1\"\n[[inputs.testin]]\naddress = \"cm-2\"\n"
	for _, name := range []string{"ENV_DATAKIT_INPUTS", "ENV_APMKIT_INPUTS"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "f.conf", "[[inputs.testin]]\naddress = \"file\"\n")
			cfg := mustLoad(t, dir, name+"="+doc, "ENV_DEFAULT_ENABLED_INPUTS=testin", "ENV_INPUT_TESTIN_COUNT=7")
			var addrs []string
			for _, in := range cfg.Inputs {
				c := testIn(t, in)
				addrs = append(addrs, c.Address)
				if c.Count != 7 {
					t.Errorf("env option not applied to %s", in.Source)
				}
			}
			if strings.Join(addrs, ",") != "file,cm-1,cm-2" {
				t.Fatalf("instances %v", addrs)
			}
			if !strings.HasPrefix(cfg.Inputs[1].Source, name) {
				t.Fatalf("source %q", cfg.Inputs[1].Source)
			}
		})
	}
}

func TestMainEnv(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "apmkit.conf", `
[global_tags]
  env = "file"
  team = "a"
[[io.outputs]]
  type = "dataway"
  url = "https://old.example?token=tkn_old"
[[io.outputs]]
  type = "influxdb"
  url = "http://127.0.0.1:8086"
  database = "apm"
`)
	cfg := mustLoad(t, dir,
		"ENV_DATAWAY=https://a.example?token=tkn_a, https://b.example?token=tkn_b",
		"ENV_GLOBAL_HOST_TAGS=env=prod, cluster=k1",
		"ENV_HTTP_LISTEN=0.0.0.0:19529",
		"ENV_LOG_LEVEL=DEBUG",
		"ENV_HOSTNAME=pod-7",
		"ENV_CACHE_REDIS_URL=redis://:pw@redis.apmkit.svc:6379/1",
	)
	m := cfg.Main
	if m.HTTPAPI.Listen != "0.0.0.0:19529" || m.Log.Level != "debug" || m.Hostname != "pod-7" ||
		m.Cache.RedisURL != "redis://:pw@redis.apmkit.svc:6379/1" {
		t.Fatalf("main %+v", m)
	}
	if !reflect.DeepEqual(m.GlobalTags, map[string]string{"env": "prod", "team": "a", "cluster": "k1"}) {
		t.Fatalf("global tags %v", m.GlobalTags)
	}
	var got []string
	for _, o := range m.IO.Outputs {
		got = append(got, o.Type+" "+o.URL)
	}
	want := "influxdb http://127.0.0.1:8086|dataway https://a.example?token=tkn_a|dataway https://b.example?token=tkn_b"
	if strings.Join(got, "|") != want {
		t.Fatalf("outputs %q", got)
	}
}

// The OpenTelemetry variables set the file's otlp output (its other keys stay), or add one.
func TestOTLPEnv(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "apmkit.conf", `
[[io.outputs]]
  type = "file"
[[io.outputs]]
  type = "otlp"
  endpoint = "127.0.0.1:4317"
  categories = ["tracing"]
  [io.outputs.headers]
    X-Tenant = "file"
    X-Team = "a"
`)
	cfg := mustLoad(t, dir,
		"OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.example:4318/base",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20tok-secret-123 , X-Tenant=env",
	)
	o := cfg.Main.IO.Outputs[1]
	want := map[string]string{"Authorization": "Bearer tok-secret-123", "X-Tenant": "env", "X-Team": "a"}
	if len(cfg.Main.IO.Outputs) != 2 || o.Endpoint != "https://collector.example:4318/base" || o.Protocol != "http/protobuf" ||
		!reflect.DeepEqual(o.Headers, want) || !reflect.DeepEqual(o.Categories, []string{"tracing"}) {
		t.Fatalf("outputs %+v", cfg.Main.IO.Outputs)
	}
	text, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "tok-secret") || !strings.Contains(text, `Authorization = "Bear****-123"`) {
		t.Fatalf("header not masked:\n%s", text)
	}

	// No otlp output in the file: the endpoint adds one, on apmkit's default protocol.
	cfg = mustLoad(t, t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317")
	if got := cfg.Main.IO.Outputs; len(got) != 1 || got[0].Type != "otlp" || got[0].Endpoint != "http://127.0.0.1:4317" || got[0].Protocol != "grpc" {
		t.Fatalf("outputs %+v", got)
	}
	// Without an endpoint, an SDK's protocol or headers variable turns nothing on.
	cfg = mustLoad(t, t.TempDir(), "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_HEADERS=a=b")
	if got := cfg.Main.IO.Outputs; len(got) != 0 {
		t.Fatalf("outputs %+v", got)
	}
}

func TestDataDirFlagWins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "apmkit.conf", "data_dir = \"/from/file\"\n")
	cfg, err := Load(Options{ConfDir: dir, DataDir: "/from/flag", Environ: []string{}})
	if err != nil || cfg.Main.DataDir != "/from/flag" {
		t.Fatalf("%v %q", err, cfg.Main.DataDir)
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "apmkit.conf", `
[[io.outputs]]
  type = "dataway"
  url = "https://openway.example/?token=tkn_secret123&x=1"
  [io.outputs.headers]
    Authorization = "Bearer hdr-secret-1234"
    X-Tenant = "shop"
[[io.outputs]]
  type = "influxdb"
  url = "http://127.0.0.1:8086/?access_token=qs-secret&u=me"
  database = "apm"
[[io.outputs]]
  type = "influxdb2"
  url = "http://127.0.0.1:8086"
  org = "o"
  bucket = "b"
  token = "influx-token-secret"
[[io.outputs]]
  type = "influxdb"
  url = "http://user:pw-secret@127.0.0.1:8086"
  database = "apm"
  password = "basic-secret"
[cache]
  redis_url = "redis+sentinel://:sentinel-secret@s1:26379?master_name=main&password=master-secret"
`)
	writeFile(t, dir, "t.conf", "[[inputs.testin]]\naddress = \"shown\"\n")
	cfg := mustLoad(t, dir)
	text, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"tkn_secret123", "influx-token-secret", "pw-secret", "basic-secret", "hdr-secret", "qs-secret", "sentinel-secret", "master-secret"} {
		if strings.Contains(text, secret) {
			t.Errorf("secret %q printed:\n%s", secret, text)
		}
	}
	for _, shown := range []string{"token=tkn_****t123&x=1", `Authorization = "Bear****1234"`, `X-Tenant = "shop"`, "access_token=****&", `redis_url = "redis+sentinel://:****@s1:26379?master_name=main&password=mast****cret"`, `address = "shown"`, "[[inputs.testin]]", "[[io.outputs]]"} {
		if !strings.Contains(text, shown) {
			t.Errorf("%q missing from:\n%s", shown, text)
		}
	}
	if cfg.Main.IO.Outputs[2].Token != "influx-token-secret" || cfg.Main.IO.Outputs[0].Headers["Authorization"] != "Bearer hdr-secret-1234" {
		t.Fatal("Effective modified the config")
	}
	var back map[string]any
	if _, err := toml.Decode(text, &back); err != nil {
		t.Fatalf("effective config is not TOML: %v", err)
	}
}

func TestSamplesDecodeToDefaults(t *testing.T) {
	var m Main
	md, err := toml.Decode(MainSample(), &m)
	if err != nil {
		t.Fatalf("%v\n%s", err, MainSample())
	}
	if len(md.Undecoded()) > 0 {
		t.Fatalf("undecoded %v", md.Undecoded())
	}
	if !reflect.DeepEqual(m, DefaultMain()) {
		t.Fatalf("main sample != defaults:\n%+v\n%+v", m, DefaultMain())
	}
	for _, name := range inputs.Names() {
		p, _ := inputs.Get(name)
		dir := t.TempDir()
		writeFile(t, dir, name+".conf", InputSample(p))
		cfg, err := load(t, dir)
		if err != nil {
			t.Fatalf("%s sample: %v\n%s", name, err, InputSample(p))
		}
		if !reflect.DeepEqual(cfg.Inputs[0].Config, p.NewConfig()) {
			t.Fatalf("%s sample != defaults:\n%+v\n%+v", name, cfg.Inputs[0].Config, p.NewConfig())
		}
	}
}

func TestSampleShowsDocsAndEnv(t *testing.T) {
	p, _ := inputs.Get("testin")
	s := InputSample(p)
	for _, want := range []string{
		"[[inputs.testin]]",
		"  ## Listen address. (env: ENV_INPUT_TESTIN_ADDRESS)\n  address = \"127.0.0.1:1\"",
		"  # optional = \"/etc/x\"",
		"  # [inputs.testin.tags]\n    # a = \"b\"",
		"  [inputs.testin.storage]\n    ## Where.\n    path = \"./s\"",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("sample lacks %q:\n%s", want, s)
		}
	}
}

func TestEffectiveShowsImplicitFileOutput(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(Options{ConfDir: dir, DataDir: "/var/apm", Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	text, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[[io.outputs]]", `type = "file"`, `dir = "/var/apm/out"`, "implicit default",
		`type = "local"`, `dir = "/var/apm/explorer"`, `retention = "72h0m0s"`, "max_mb = 1024", "implicit local output"} {
		if !strings.Contains(text, want) {
			t.Errorf("%q missing from:\n%s", want, text)
		}
	}
	if len(cfg.Main.IO.Outputs) != 0 {
		t.Fatal("Effective modified the config")
	}
	if err := os.WriteFile(filepath.Join(dir, MainFile), []byte("[io]\nexplorer = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load(Options{ConfDir: dir, DataDir: "/var/apm", Environ: []string{}}); err != nil {
		t.Fatal(err)
	}
	if text, _ = cfg.Effective(); strings.Contains(text, `type = "local"`) || !strings.Contains(text, "explorer = false") {
		t.Errorf("explorer = false still shows a local output:\n%s", text)
	}
	// The environment wins over the file, both ways; a value that is no boolean is an error.
	if cfg, err = Load(Options{ConfDir: dir, DataDir: "/var/apm", Environ: []string{EnvIOExplorer + "=true"}}); err != nil || !cfg.Main.IO.Explorer {
		t.Fatalf("%s=true over explorer = false: %v, explorer %v", EnvIOExplorer, err, err == nil && cfg.Main.IO.Explorer)
	}
	if text, _ = cfg.Effective(); !strings.Contains(text, `type = "local"`) {
		t.Errorf("%s=true shows no local output:\n%s", EnvIOExplorer, text)
	}
	if err := os.Remove(filepath.Join(dir, MainFile)); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load(Options{ConfDir: dir, DataDir: "/var/apm", Environ: []string{EnvIOExplorer + "=false"}}); err != nil || cfg.Main.IO.Explorer {
		t.Fatalf("%s=false: %v", EnvIOExplorer, err)
	}
	if _, err = Load(Options{ConfDir: dir, DataDir: "/var/apm", Environ: []string{EnvIOExplorer + "=off-ish"}}); err == nil || !strings.Contains(err.Error(), EnvIOExplorer+"=off-ish: not a boolean") {
		t.Errorf("a bad %s: %v", EnvIOExplorer, err)
	}
}

// TestHTTPAuth: the explorer's credentials come from the file or ENV_HTTP_TOKEN, are
// masked when printed, and half a basic-auth pair or a placeholder is an error.
func TestHTTPAuth(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(Options{ConfDir: dir, DataDir: t.TempDir(), Environ: []string{"ENV_HTTP_TOKEN=tok-0123456789abc"}})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := cfg.Effective()
	if cfg.Main.HTTPAPI.Token.Reveal() != "tok-0123456789abc" || strings.Contains(text, "tok-0123456789abc") || !strings.Contains(text, `token = "tok-****9abc"`) {
		t.Errorf("token %q; printed:\n%s", cfg.Main.HTTPAPI.Token.Reveal(), text)
	}
	for conf, want := range map[string]string{
		"[http_api]\nusername = \"ops\"\n":          "http_api: username and password: set both for basic auth, or neither",
		"[http_api]\ntoken = \"<your token>\"\n":    "http_api.token: a placeholder (<YOUR), not a secret",
		"[http_api]\npassword = \"x-0123456789\"\n": "http_api: username and password: set both",
	} {
		if err := os.WriteFile(filepath.Join(dir, MainFile), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(Options{ConfDir: dir, DataDir: t.TempDir(), Environ: []string{}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", conf, err, want)
		}
	}
}
