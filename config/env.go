package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apmkit/apmkit/inputs"
	"github.com/apmkit/apmkit/internal/secret"
	apmio "github.com/apmkit/apmkit/io"
)

// Environment variables apmkit reads, with DataKit's names.
const (
	EnvDefaultEnabledInputs = "ENV_DEFAULT_ENABLED_INPUTS"
	EnvDatakitInputs        = "ENV_DATAKIT_INPUTS"
	EnvApmkitInputs         = "ENV_APMKIT_INPUTS"
	EnvDataway              = "ENV_DATAWAY"
	EnvGlobalHostTags       = "ENV_GLOBAL_HOST_TAGS"
	EnvHTTPListen           = "ENV_HTTP_LISTEN"
	EnvHTTPToken            = "ENV_HTTP_TOKEN"
	EnvLogLevel             = "ENV_LOG_LEVEL"
	EnvHostname             = "ENV_HOSTNAME"
	EnvCacheRedisURL        = "ENV_CACHE_REDIS_URL"
	EnvIOExplorer           = "ENV_IO_EXPLORER"
	EnvInputPrefix          = "ENV_INPUT_"
	// OpenTelemetry's standard exporter variables configure an otlp output.
	EnvOTLPEndpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPProtocol = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPHeaders  = "OTEL_EXPORTER_OTLP_HEADERS"
)

func parseEnviron(environ []string) map[string]string {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// applyMainEnv overlays the agent's own variables; the environment wins over the file, as
// in DataKit's container deployments.
// It returns, by key path, the variables it applied as VAR=value (URLs masked), for
// attribute.
func applyMainEnv(m *Main, env map[string]string) (map[string]string, error) {
	set := map[string]string{}
	if v, ok := env[EnvHostname]; ok && v != "" {
		m.Hostname = v
	}
	if v, ok := env[EnvHTTPListen]; ok {
		m.HTTPAPI.Listen = strings.TrimSpace(v)
		set["http_api.listen"] = EnvHTTPListen + "=" + v
	}
	if v, ok := env[EnvHTTPToken]; ok && v != "" {
		m.HTTPAPI.Token = secret.Secret(strings.TrimSpace(v))
		set["http_api.token"] = EnvHTTPToken + "=" + secret.Mask(v)
	}
	if v, ok := env[EnvLogLevel]; ok && v != "" {
		m.Log.Level = strings.ToLower(strings.TrimSpace(v))
		set["log.level"] = EnvLogLevel + "=" + v
	}
	if v, ok := env[EnvGlobalHostTags]; ok && strings.TrimSpace(v) != "" {
		tags, err := parseTagList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvGlobalHostTags, err)
		}
		set["global_tags"] = EnvGlobalHostTags + "=" + v
		if m.GlobalTags == nil {
			m.GlobalTags = map[string]string{}
		}
		for k, v := range tags {
			m.GlobalTags[k] = v
		}
	}
	if v := strings.TrimSpace(env[EnvIOExplorer]); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: not a boolean (true or false)", EnvIOExplorer, v)
		}
		m.IO.Explorer = on
		set["io.explorer"] = EnvIOExplorer + "=" + v
	}
	if v := strings.TrimSpace(env[EnvCacheRedisURL]); v != "" {
		m.Cache.RedisURL = v
		set["cache.redis_url"] = EnvCacheRedisURL + "=" + secret.URL(v)
	}
	if v, ok := env[EnvDataway]; ok && strings.TrimSpace(v) != "" {
		urls := splitList(v)
		m.IO.Outputs = withDataways(m.IO.Outputs, urls)
		for i, u := range urls {
			set[fmt.Sprintf("io.outputs[%d]", len(m.IO.Outputs)-len(urls)+i)] = EnvDataway + "=" + secret.URL(u)
		}
	}
	if err := applyOTLPEnv(m, env, set); err != nil {
		return nil, err
	}
	return set, nil
}

// applyOTLPEnv overlays OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL and _HEADERS on the first
// otlp output of the file, keeping its other keys (the variables win over the file for the
// keys they set); with no otlp output in the file, the endpoint variable adds one. Without
// an endpoint anywhere the variables are left alone: an environment made for OpenTelemetry
// SDKs does not turn an output on by itself.
func applyOTLPEnv(m *Main, env map[string]string, set map[string]string) error {
	endpoint := strings.TrimSpace(env[EnvOTLPEndpoint])
	protocol := strings.TrimSpace(env[EnvOTLPProtocol])
	headers := strings.TrimSpace(env[EnvOTLPHeaders])
	i := slices.IndexFunc(m.IO.Outputs, func(o apmio.OutputConfig) bool { return o.Type == apmio.TypeOTLP })
	if i < 0 {
		if endpoint == "" {
			return nil
		}
		m.IO.Outputs = append(m.IO.Outputs, apmio.OutputConfig{Type: apmio.TypeOTLP})
		i = len(m.IO.Outputs) - 1
	}
	o := &m.IO.Outputs[i]
	var from []string
	if endpoint != "" {
		o.Endpoint = endpoint
		from = append(from, EnvOTLPEndpoint+"="+secret.Endpoint(endpoint))
	}
	if protocol != "" {
		o.Protocol = protocol
		from = append(from, EnvOTLPProtocol+"="+protocol)
	}
	if headers != "" {
		h, err := parseOTLPHeaders(headers)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvOTLPHeaders, err)
		}
		o.Headers = maps.Clone(o.Headers)
		if o.Headers == nil {
			o.Headers = map[string]string{}
		}
		maps.Copy(o.Headers, h)
		from = append(from, EnvOTLPHeaders+"="+strings.Join(slices.Sorted(maps.Keys(h)), ",")+" (values not shown)")
	}
	if len(from) > 0 {
		set[fmt.Sprintf("io.outputs[%d]", i)] = strings.Join(from, " ")
	}
	return nil
}

// parseOTLPHeaders reads OpenTelemetry's header list: key=value pairs separated by commas,
// values percent-encoded (W3C baggage format).
func parseOTLPHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value (format: key1=value1,key2=value2)", secret.Mask(item))
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("header %s: the value is not percent-encoded", k)
		}
		h[k] = val
	}
	return h, nil
}

// parseTagList parses "k=v,k2=v2".
func parseTagList(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, item := range splitList(s) {
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not key=value (format: k=v,k2=v2)", item)
		}
		tags[k] = v
	}
	return tags, nil
}

// withDataways replaces the file's dataway outputs by one per URL from the environment.
func withDataways(outputs []apmio.OutputConfig, urls []string) []apmio.OutputConfig {
	kept := slices.DeleteFunc(slices.Clone(outputs), func(o apmio.OutputConfig) bool { return o.Type == "dataway" })
	for _, u := range urls {
		kept = append(kept, apmio.OutputConfig{Type: "dataway", URL: u})
	}
	return kept
}

// splitList splits on commas and white space and drops empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// addEnvInputs reads the whole-TOML input config injected from a ConfigMap.
func (c *Config) addEnvInputs(env map[string]string) error {
	dk, apm := env[EnvDatakitInputs], env[EnvApmkitInputs]
	switch {
	case dk != "" && apm != "" && dk != apm:
		return fmt.Errorf("config: both %s and %s are set and differ; set only one", EnvDatakitInputs, EnvApmkitInputs)
	case apm != "":
		return c.addInputs(EnvApmkitInputs, apm)
	case dk != "":
		return c.addInputs(EnvDatakitInputs, dk)
	}
	return nil
}

// addDefaultEnabled enables, with their defaults, the listed inputs that nothing else
// configures. Names apmkit does not know (DataKit's list has cpu, mem, ...) are skipped
// with a warning so a DataKit environment can be reused as it is.
func (c *Config) addDefaultEnabled(env map[string]string) {
	for _, name := range splitList(env[EnvDefaultEnabledInputs]) {
		plugin, ok := inputs.Get(name)
		if !ok {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: input %q is not part of apmkit; skipped (known: %s)",
				EnvDefaultEnabledInputs, name, strings.Join(inputs.Names(), ", ")))
			continue
		}
		if slices.ContainsFunc(c.Inputs, func(in Instance) bool { return in.Plugin == name }) {
			continue
		}
		c.Inputs = append(c.Inputs, Instance{Plugin: name, Source: EnvDefaultEnabledInputs + ": " + name, Config: plugin.NewConfig()})
	}
}

// envPrefix is ENV_INPUT_<NAME>_.
func envPrefix(plugin string) string {
	return EnvInputPrefix + strings.ToUpper(plugin) + "_"
}

// applyInputEnv overlays ENV_INPUT_<NAME>_<OPTION> on every instance of the input. It
// returns, by TOML key path (sampler.sampling_rate), the variables it set as VAR=value, so
// that validation errors name the variable rather than the file.
func applyInputEnv(in *Instance, env map[string]string) (map[string]string, error) {
	prefix := envPrefix(in.Plugin)
	set := map[string]string{}
	err := walkEnvFields(reflect.ValueOf(in.Config), "", func(opt, path string, v reflect.Value) error {
		raw, ok := env[prefix+opt]
		if !ok {
			return nil
		}
		if err := setFromString(v, raw); err != nil {
			return fmt.Errorf("%s%s: %w", prefix, opt, err)
		}
		set[path] = prefix + opt + "=" + raw
		return nil
	})
	return set, err
}

// walkEnvFields calls fn for every field tagged `env:"OPTION"`, nested structs included,
// with the field's TOML key path.
func walkEnvFields(v reflect.Value, at string, fn func(opt, path string, v reflect.Value) error) error {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	for _, f := range tomlFields(v.Type()) {
		fv := v.FieldByIndex(f.sf.Index)
		path := f.key
		if at != "" {
			path = at + "." + f.key
		}
		if opt := f.sf.Tag.Get("env"); opt != "" {
			if err := fn(opt, path, fv); err != nil {
				return err
			}
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Time{}) {
			if err := walkEnvFields(fv.Addr(), path, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// attribute gives each problem of a validation error its real source: the environment
// variable that set the key it is about (sources: key path -> "VAR=value"), else fallback
// (the file or table).
func attribute(err error, sources map[string]string, fallback string) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, leaf := range leaves(err) {
		msg := leaf.Error()
		src := fallback
		best := ""
		for path, s := range sources {
			if len(path) > len(best) && keyPrefixed(msg, path) {
				best, src = path, s
			}
		}
		if src == "" {
			out = append(out, leaf)
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", src, leaf))
	}
	return errors.Join(out...)
}

// keyPrefixed says whether msg is about key path: "path: ...", "path.sub: ...",
// "path[1] ..." or "path ...".
func keyPrefixed(msg, path string) bool {
	if !strings.HasPrefix(msg, path) {
		return false
	}
	rest := msg[len(path):]
	return rest == "" || strings.ContainsAny(rest[:1], ":. [")
}

// leaves flattens errors.Join trees.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// EnvOptions lists the ENV_INPUT_ variables a plugin reads, sorted.
func EnvOptions(p inputs.Plugin) []string {
	var names []string
	_ = walkEnvFields(reflect.ValueOf(p.NewConfig()), "", func(opt, _ string, _ reflect.Value) error {
		names = append(names, envPrefix(p.Name)+opt)
		return nil
	})
	slices.Sort(names)
	return names
}

// checkInputEnvNames rejects ENV_INPUT_<known input>_<OPTION> variables that match no
// option, since a typo there would otherwise be silently ignored. Variables of inputs that
// apmkit does not have are left alone (a DataKit environment may set them).
func checkInputEnvNames(env map[string]string) error {
	var errs []error
	for _, name := range inputs.Names() {
		plugin, _ := inputs.Get(name)
		allowed := EnvOptions(plugin)
		for _, k := range sortedKeys(env) {
			if strings.HasPrefix(k, envPrefix(name)) && !slices.Contains(allowed, k) {
				errs = append(errs, fmt.Errorf("%s: unknown option for input %s (allowed: %s)", k, name, strings.Join(allowed, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeOf(time.Duration(0))

// setFromString sets a config field from an environment value: plain text for strings,
// numbers, booleans and durations; JSON for maps, structs and lists (a list of strings may
// also be comma separated).
func setFromString(v reflect.Value, raw string) error {
	s := strings.TrimSpace(raw)
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m)", raw)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", raw)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", raw)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(s, "[") {
			v.Set(reflect.ValueOf(splitList(s)).Convert(v.Type()))
			return nil
		}
		return setJSON(v, s)
	default:
		return setJSON(v, s)
	}
	return nil
}

func setJSON(v reflect.Value, s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("invalid JSON for %s: %v", v.Type(), err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
