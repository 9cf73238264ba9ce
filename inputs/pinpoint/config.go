package pinpoint

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"time"

	"github.com/apmkit/apmkit/pipeline"
)

// Config is one [[inputs.pinpoint]] table. Options marked env can be set with
// ENV_INPUT_PINPOINT_<OPTION>, with DataKit's names and formats.
type Config struct {
	Alias          string `toml:"alias" env:"ALIAS" doc:"This instance's stable name: its cache state (agent info, metadata, pending chunks) is kept under it,\nand logs and /v1/stats show it. Empty = address. Set it when several instances run, or before\nchanging address, so the state follows the instance." example:"\"shop-collector\""`
	Address        string `toml:"address" env:"ADDRESS" doc:"gRPC address for every Pinpoint service (agent, metadata, command, stat, span).\nThe Pinpoint collector's agent port is 9991. Use 0.0.0.0:9991 to accept agents from other hosts."`
	StatAddress    string `toml:"stat_address" env:"STAT_ADDRESS" doc:"Optional second address serving the same services, for agents that keep the default stat port 9992.\nEmpty = only address."`
	SpanAddress    string `toml:"span_address" env:"SPAN_ADDRESS" doc:"Optional third address serving the same services, for agents that keep the default span port 9993."`
	MaxRecvMsgSize int    `toml:"max_recv_msg_size" env:"MAX_RECV_MSG_SIZE" doc:"Largest gRPC message accepted, in bytes (Pinpoint's limit is 4 MiB). Larger ones are answered RESOURCE_EXHAUSTED."`

	ReceiveBudgetMB      int           `toml:"receive_budget_mb" env:"RECEIVE_BUDGET_MB" doc:"Memory for the messages being decoded and handled, in MiB. Each message is charged what it will\nhold before it is decoded (agent-like spans about 11.5 times their wire size: a full 4 MiB batch\nabout 46 MiB); when the budget is in use, span batches wait up to receive_budget_wait and are then\nanswered RESOURCE_EXHAUSTED (agents send them again), streams are held back by gRPC flow control.\nRSS peaks near twice the live heap (Go's GC): the default suits a 512 MiB container\n(README: Sizing memory)."`
	ReceiveBudgetWait    time.Duration `toml:"receive_budget_wait" env:"RECEIVE_BUDGET_WAIT" doc:"How long a span batch (or any unary call) waits for room in the receive budget before it is\nanswered RESOURCE_EXHAUSTED; never more than half the time the call's deadline leaves.\nA stream message waits 10 times as long, then its stream ends with RESOURCE_EXHAUSTED."`
	MaxConcurrentStreams int           `toml:"max_concurrent_streams" env:"MAX_CONCURRENT_STREAMS" doc:"Most concurrent gRPC calls (streams) per agent connection. An agent uses a few streams (ping,\ncommand, span and stat) and up to 10 span batches in flight; further calls wait in the agent."`
	MaxConnections       int           `toml:"max_connections" env:"MAX_CONNECTIONS" doc:"Most open agent connections over all of this input's addresses; a connection beyond it is closed\nat once and the agent retries. An agent holds up to 4 connections. 0 = no limit."`
	TLSCertFile          string        `toml:"tls_cert_file" env:"TLS_CERT_FILE" doc:"TLS certificate (PEM) for the gRPC server; with tls_key_file. Empty = plaintext, as agents default to." example:"\"/etc/apmkit/tls/server.crt\""`
	TLSKeyFile           string        `toml:"tls_key_file" env:"TLS_KEY_FILE" doc:"TLS private key (PEM)." example:"\"/etc/apmkit/tls/server.key\""`
	TypeProviders        []string      `toml:"type_providers" env:"TYPE_PROVIDERS" doc:"Pinpoint plugin type-provider.yml files with custom serviceTypes and annotation keys\n(JSON list or comma-separated in the env variable)."`
	MetadataTTL          time.Duration `toml:"metadata_ttl" env:"METADATA_TTL" doc:"Agent info and metadata of an agent run unseen for this long expire from the cache."`
	ChunkWait            time.Duration `toml:"chunk_wait" env:"CHUNK_WAIT" doc:"How long a span chunk waits on disk for its span; then it is written as a partial span (tag partial=true)."`
	MetadataWait         time.Duration `toml:"metadata_wait" env:"METADATA_WAIT" doc:"How long a span whose api/sql/string ids are not known yet waits for the agent's metadata;\nthen it is written with placeholders such as api:123."`

	DecodeOnly bool `toml:"decode_only" env:"DECODE_ONLY" doc:"Benchmarks only: decode, validate and count messages, then drop them (no spans, no stats are written)."`

	Storage          Storage                     `toml:"storage" env:"STORAGE" doc:"Where this input's on-disk cache lives and its cap in MiB (DataKit's option).\nEmpty path = apmkit's shared cache under DATA_DIR/cache (or in Redis with [cache] redis_url, which refuses a path).\nEnv: JSON {\"storage\": path, \"capacity\": MB}."`
	KeepRareResource bool                        `toml:"keep_rare_resource" env:"KEEP_RARE_RESOURCE" doc:"Keep a trace whole when one of its entry spans has a (service, resource) not seen in the last hour\n(resources compared as URL templates: /orders/42 and /orders/43 are one), whatever the sampler says."`
	HTTPURLTag       string                      `toml:"http_url_tag" env:"HTTP_URL_TAG" doc:"What the http_url tag holds: \"template\" = the URL's template, ids in the path as {id} (/stock/42 ->\n/stock/{id}: one series per route), with the URL as it came in the http_url_raw field when it differs;\n\"raw\" = the URL as it came, as DataKit writes it (one series per id), and no http_url_raw field."`
	DelMessage       bool                        `toml:"del_message" env:"DEL_MESSAGE" doc:"Drop the message field (the JSON of the original span) from every span: much smaller points."`
	CloseResource    map[string][]string         `toml:"close_resource" env:"CLOSE_RESOURCE" doc:"Drop whole traces whose root span (the entry span without a parent) has a matching resource:\nservice name (\"*\" = every service) -> regular expressions. Env: JSON {\"service\": [\"regex\", ...]}." example:"\"*\" = [\"^/health$\"]\n\"frontend\" = [\"^/static/.*\"]"`
	Sampler          Sampler                     `toml:"sampler" doc:"Per-trace sampling: every span of a trace gets the same decision; the hash part agrees on every apmkit replica."`
	SmartSampler     pipeline.SmartSamplerConfig `toml:"smart_sampler" env:"SMART_SAMPLER" doc:"Per-URL quota sampling by error/slow/normal class and host CPU (off by default). Replaces sampler when enabled.\nEnv: JSON {\"enabled\": true, \"slow_threshold\": \"800ms\"}."`
	DecisionWait     time.Duration               `toml:"decision_wait" env:"DECISION_WAIT" doc:"With a sampler or close_resource: how long a trace's spans wait, from its first span, for the rest of the trace\n(other agents' spans, chunks) before the trace is kept or dropped whole. Spans that come later follow\nthe decision. Without them nothing waits."`
	DecisionBufferMB int                         `toml:"decision_buffer_mb" env:"DECISION_BUFFER_MB" doc:"Memory for the spans waiting for their trace's decision, in MiB; when it is full the oldest traces are\ndecided early with the spans they have."`
	Tags             map[string]string           `toml:"tags" env:"TAGS" doc:"Tags added to every point of this input (a span's own tag of the same key wins). Env: JSON." example:"env = \"prod\"\nproject = \"shop\""`
}

// Storage is [inputs.pinpoint.storage]. The JSON names are DataKit's env format.
type Storage struct {
	Path     string `toml:"path" json:"storage" doc:"Folder of this input's own cache (relative to the data dir). Empty = the shared cache."`
	Capacity int    `toml:"capacity" json:"capacity" doc:"Cap of this input's own cache in MiB. 0 = no cap."`
}

// Sampler is [inputs.pinpoint.sampler].
type Sampler struct {
	SamplingRate float64 `toml:"sampling_rate" env:"SAMPLER" doc:"Share of traces kept, 0..1 (1 = all), by a fixed hash of the trace id. A trace with an error in any\nspan is kept whole (0 = only those)."`
}

// DefaultReceiveBudgetMB is receive_budget_mb's default, sized for a 512 MiB container:
// RSS peaks near twice the live heap (Go's default GC), which is the idle process, the
// uploader, this budget and the calls being received. 16 batches of 4 MiB at once peak at
// about 350 MiB with it (TestReceiveBudget in cmd/ppload/faulttest).
const DefaultReceiveBudgetMB = 128

// Values of http_url_tag.
const (
	HTTPURLTagTemplate = "template"
	HTTPURLTagRaw      = "raw"
)

// DefaultConfig is the sample's configuration: every agent port on loopback.
func DefaultConfig() *Config {
	return &Config{
		Address:        "127.0.0.1:9991",
		StatAddress:    "127.0.0.1:9992",
		SpanAddress:    "127.0.0.1:9993",
		MaxRecvMsgSize: 4 << 20,

		ReceiveBudgetMB:      DefaultReceiveBudgetMB,
		ReceiveBudgetWait:    3 * time.Second,
		MaxConcurrentStreams: 32,
		MaxConnections:       2048,
		TypeProviders:        []string{},
		MetadataTTL:          30 * 24 * time.Hour,
		ChunkWait:            2 * time.Minute,
		MetadataWait:         5 * time.Second,
		HTTPURLTag:           HTTPURLTagTemplate,
		Sampler:              Sampler{SamplingRate: 1},
		SmartSampler:         pipeline.DefaultSmartSampler(),
		DecisionWait:         pipeline.DefaultDecisionWait,
		DecisionBufferMB:     pipeline.DefaultDecisionBufferBytes >> 20,
	}
}

// InstanceAlias implements inputs.Aliaser: the alias option, else the address.
func (c *Config) InstanceAlias() string {
	if c.Alias != "" {
		return c.Alias
	}
	return c.Address
}

// ListenAddresses implements inputs.Listener.
func (c *Config) ListenAddresses() map[string]string {
	out := map[string]string{}
	for key, addr := range map[string]string{"address": c.Address, "stat_address": c.StatAddress, "span_address": c.SpanAddress} {
		if addr != "" {
			out[key] = addr
		}
	}
	return out
}

// Validate checks every option; errors name the key and what is allowed.
func (c *Config) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, errors.New("address: required (e.g. 127.0.0.1:9991)"))
	}
	seen := map[string]string{}
	for _, a := range [][2]string{{"address", c.Address}, {"stat_address", c.StatAddress}, {"span_address", c.SpanAddress}} {
		key, addr := a[0], a[1]
		if addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", key, addr))
			continue
		}
		if other, dup := seen[addr]; dup && port != "0" {
			errs = append(errs, fmt.Errorf("%s: %q is the same as %s", key, addr, other))
		}
		seen[addr] = key
	}
	if c.MaxRecvMsgSize < 64<<10 || c.MaxRecvMsgSize > 256<<20 {
		errs = append(errs, fmt.Errorf("max_recv_msg_size: %d must be within 65536..268435456 bytes", c.MaxRecvMsgSize))
	}
	if c.ReceiveBudgetMB < 8 || c.ReceiveBudgetMB > 1<<20 {
		errs = append(errs, fmt.Errorf("receive_budget_mb: %d must be within 8..1048576 MiB", c.ReceiveBudgetMB))
	}
	if c.ReceiveBudgetWait < 0 || c.ReceiveBudgetWait > time.Minute {
		errs = append(errs, fmt.Errorf("receive_budget_wait: %s must be within 0s..1m", c.ReceiveBudgetWait))
	}
	if c.MaxConcurrentStreams < 4 || c.MaxConcurrentStreams > 1<<20 {
		errs = append(errs, fmt.Errorf("max_concurrent_streams: %d must be within 4..1048576 (an agent needs 4 streams at least)", c.MaxConcurrentStreams))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("max_connections: %d must be >= 0 (0 = no limit)", c.MaxConnections))
	}
	errs = append(errs, c.validateTLS())
	for _, p := range c.TypeProviders {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("type_providers: %w", err))
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"metadata_ttl", c.MetadataTTL}, {"chunk_wait", c.ChunkWait}, {"metadata_wait", c.MetadataWait}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s must be > 0", d.key, d.d))
		}
	}
	if c.Storage.Capacity < 0 {
		errs = append(errs, fmt.Errorf("storage.capacity: %d must be >= 0 (MiB)", c.Storage.Capacity))
	}
	if c.HTTPURLTag != HTTPURLTagTemplate && c.HTTPURLTag != HTTPURLTagRaw {
		errs = append(errs, fmt.Errorf("http_url_tag: %q must be %q or %q", c.HTTPURLTag, HTTPURLTagTemplate, HTTPURLTagRaw))
	}
	if c.SmartSampler.SlowThreshold <= 0 {
		errs = append(errs, fmt.Errorf("smart_sampler.slow_threshold: %s must be > 0", c.SmartSampler.SlowThreshold))
	}
	if c.DecisionWait <= 0 || c.DecisionWait > 10*time.Minute {
		errs = append(errs, fmt.Errorf("decision_wait: %s must be within 0s (excluded)..10m", c.DecisionWait))
	}
	if c.DecisionBufferMB < 1 || c.DecisionBufferMB > 1<<20 {
		errs = append(errs, fmt.Errorf("decision_buffer_mb: %d must be within 1..1048576 MiB", c.DecisionBufferMB))
	}
	if r := c.Sampler.SamplingRate; r < 0 || r > 1 {
		errs = append(errs, fmt.Errorf("sampler.sampling_rate: %v must be within 0..1", r))
	}
	for svc, exprs := range c.CloseResource {
		for _, e := range exprs {
			if _, err := regexp.Compile(e); err != nil {
				errs = append(errs, fmt.Errorf("close_resource: %q: invalid regular expression %q: %v", svc, e, err))
			}
		}
	}
	for k, v := range c.Tags {
		if k == "" || v == "" {
			errs = append(errs, fmt.Errorf("tags: %q = %q: keys and values must not be empty", k, v))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateTLS() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("tls_cert_file and tls_key_file: set both or neither")
	}
	for key, f := range map[string]string{"tls_cert_file": c.TLSCertFile, "tls_key_file": c.TLSKeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// PipelineConfig hands the trace options to the input's pipeline.
func (c *Config) PipelineConfig() pipeline.Config {
	rate := c.Sampler.SamplingRate
	return pipeline.Config{
		Tags:             c.Tags,
		CloseResource:    c.CloseResource,
		SamplingRate:     &rate,
		KeepRareResource: c.KeepRareResource,
		DelMessage:       c.DelMessage,
		SmartSampler:     c.SmartSampler,

		DecisionWait:        c.DecisionWait,
		DecisionBufferBytes: int64(c.DecisionBufferMB) << 20,
	}
}
