package pinpoint

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/pipeline"
)

func loadPinpoint(t *testing.T, conf string, env ...string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if conf != "" {
		if err := os.WriteFile(filepath.Join(dir, "pinpoint.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		env = append(env, "ENV_DEFAULT_ENABLED_INPUTS=pinpoint")
	}
	cfg, err := config.Load(config.Options{ConfDir: dir, Environ: env})
	if err != nil {
		return nil, err
	}
	if len(cfg.Inputs) != 1 {
		t.Fatalf("instances %d", len(cfg.Inputs))
	}
	return cfg.Inputs[0].Config.(*Config), nil
}

// TestOptionsFromFileAndEnv sets every DataKit option once in a conf file and once through
// its ENV_INPUT_PINPOINT_* variable and expects the same pipeline and listener config.
func TestOptionsFromFileAndEnv(t *testing.T) {
	file, err := loadPinpoint(t, `
[[inputs.pinpoint]]
  address = "0.0.0.0:19991"
  keep_rare_resource = true
  del_message = true
  metadata_wait = "3s"
  decision_wait = "2s"
  decision_buffer_mb = 8
  [inputs.pinpoint.storage]
    path = "./pp"
    capacity = 512
  [inputs.pinpoint.close_resource]
    "*" = ["^/health$"]
    "frontend" = ["^/static/.*"]
  [inputs.pinpoint.sampler]
    sampling_rate = 0.25
  [inputs.pinpoint.tags]
    env = "prod"
  [inputs.pinpoint.smart_sampler]
    enabled = true
    slow_threshold = "1s"
`)
	if err != nil {
		t.Fatal(err)
	}
	env, err := loadPinpoint(t, "",
		"ENV_INPUT_PINPOINT_ADDRESS=0.0.0.0:19991",
		"ENV_INPUT_PINPOINT_KEEP_RARE_RESOURCE=true",
		"ENV_INPUT_PINPOINT_DEL_MESSAGE=true",
		"ENV_INPUT_PINPOINT_METADATA_WAIT=3s",
		"ENV_INPUT_PINPOINT_DECISION_WAIT=2s",
		"ENV_INPUT_PINPOINT_DECISION_BUFFER_MB=8",
		`ENV_INPUT_PINPOINT_STORAGE={"storage":"./pp","capacity":512}`,
		`ENV_INPUT_PINPOINT_CLOSE_RESOURCE={"*":["^/health$"],"frontend":["^/static/.*"]}`,
		"ENV_INPUT_PINPOINT_SAMPLER=0.25",
		`ENV_INPUT_PINPOINT_TAGS={"env":"prod"}`,
		`ENV_INPUT_PINPOINT_SMART_SAMPLER={"enabled":true,"slow_threshold":"1s"}`,
	)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(file, env) {
		t.Fatalf("file and env differ:\nfile %+v\nenv  %+v", file, env)
	}
	pc := env.PipelineConfig()
	want := pipeline.Config{
		Tags:             map[string]string{"env": "prod"},
		CloseResource:    map[string][]string{"*": {"^/health$"}, "frontend": {"^/static/.*"}},
		KeepRareResource: true, DelMessage: true,
		SmartSampler: pipeline.SmartSamplerConfig{Enabled: true, SlowThreshold: time.Second},
		DecisionWait: 2 * time.Second, DecisionBufferBytes: 8 << 20,
	}
	if pc.SamplingRate == nil || *pc.SamplingRate != 0.25 {
		t.Fatalf("sampling rate %v", pc.SamplingRate)
	}
	pc.SamplingRate = nil
	if !reflect.DeepEqual(pc, want) {
		t.Fatalf("pipeline config\n got %+v\nwant %+v", pc, want)
	}
	if env.Address != "0.0.0.0:19991" || env.Storage.Path != "./pp" || env.Storage.Capacity != 512 || env.MetadataWait != 3*time.Second {
		t.Fatalf("listener/storage config %+v", env)
	}
}

func TestInvalidOptions(t *testing.T) {
	cases := map[string]struct {
		conf string
		env  []string
		want string
	}{
		"bad regexp in file": {conf: "[[inputs.pinpoint]]\n[inputs.pinpoint.close_resource]\nsvc = [\"([\"]\n", want: `close_resource: "svc": invalid regular expression "(["`},
		"bad regexp in env":  {env: []string{`ENV_INPUT_PINPOINT_CLOSE_RESOURCE={"*":["(["]}`}, want: "invalid regular expression"},
		"rate above 1":       {env: []string{"ENV_INPUT_PINPOINT_SAMPLER=1.5"}, want: "sampler.sampling_rate: 1.5 must be within 0..1"},
		"rate not a number":  {env: []string{"ENV_INPUT_PINPOINT_SAMPLER=half"}, want: "ENV_INPUT_PINPOINT_SAMPLER"},
		"bad address":        {env: []string{"ENV_INPUT_PINPOINT_ADDRESS=9991"}, want: `address: "9991" is not host:port`},
		"same addresses":     {conf: "[[inputs.pinpoint]]\naddress = \"127.0.0.1:9991\"\nstat_address = \"127.0.0.1:9991\"\n", want: "stat_address: \"127.0.0.1:9991\" is the same as address"},
		"tls half":           {conf: "[[inputs.pinpoint]]\ntls_cert_file = \"x.crt\"\n", want: "set both or neither"},
		"missing provider":   {conf: "[[inputs.pinpoint]]\ntype_providers = [\"/nonexistent/type-provider.yml\"]\n", want: "type_providers"},
		"small max msg":      {conf: "[[inputs.pinpoint]]\nmax_recv_msg_size = 10\n", want: "max_recv_msg_size: 10 must be within"},
		"storage JSON field": {env: []string{`ENV_INPUT_PINPOINT_STORAGE={"path":"x"}`}, want: `unknown field "path"`},
		"smart sampler JSON": {env: []string{`ENV_INPUT_PINPOINT_SMART_SAMPLER={"slow":"1s"}`}, want: `unknown field "slow"`},
		"decision_wait 0":    {env: []string{"ENV_INPUT_PINPOINT_DECISION_WAIT=0s"}, want: "decision_wait: 0s must be within"},
		"decision buffer 0":  {conf: "[[inputs.pinpoint]]\ndecision_buffer_mb = 0\n", want: "decision_buffer_mb: 0 must be within"},
		"negative capacity":  {conf: "[[inputs.pinpoint]]\n[inputs.pinpoint.storage]\ncapacity = -1\n", want: "storage.capacity"},
		"tiny budget":        {env: []string{"ENV_INPUT_PINPOINT_RECEIVE_BUDGET_MB=4"}, want: "receive_budget_mb: 4 must be within 8.."},
		"negative wait":      {conf: "[[inputs.pinpoint]]\nreceive_budget_wait = \"-1s\"\n", want: "receive_budget_wait: -1s must be within"},
		"too few streams":    {conf: "[[inputs.pinpoint]]\nmax_concurrent_streams = 2\n", want: "max_concurrent_streams: 2 must be within 4.."},
		"negative conns":     {env: []string{"ENV_INPUT_PINPOINT_MAX_CONNECTIONS=-1"}, want: "max_connections: -1 must be >= 0"},
		"bad http_url_tag":   {env: []string{"ENV_INPUT_PINPOINT_HTTP_URL_TAG=path"}, want: `http_url_tag: "path" must be "template" or "raw"`},
		"same default alias": {conf: "[[inputs.pinpoint]]\naddress = \"127.0.0.1:0\"\n[[inputs.pinpoint]]\naddress = \"127.0.0.1:0\"\n",
			want: `two [[inputs.pinpoint]] instances have the alias "127.0.0.1:0"`},
		"same alias": {conf: "[[inputs.pinpoint]]\nalias = \"a\"\naddress = \"127.0.0.1:1\"\n[[inputs.pinpoint]]\nalias = \"a\"\naddress = \"127.0.0.1:2\"\n",
			want: `instances have the alias "a"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := loadPinpoint(t, c.conf, c.env...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}
