package config

import (
	"bytes"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/apmkit/apmkit/internal/secret"
	apmio "github.com/apmkit/apmkit/io"
)

// Effective renders the effective configuration (defaults, files and environment) as TOML,
// with secrets masked: secret.Secret fields mask themselves; fields tagged `secret:"true"`
// or named password, token, secret or api_key, the secrets of URLs (keys url and *_url;
// secret.URL: the same masker as the outputs' logs) and the values of secret headers
// (Authorization, *token*, *key*) are masked here. Implicit outputs are shown: the file
// output when no output is configured, the explorer's local output when io.explorer is on
// (see io.Config.WithImplicitOutputs).
func (c *Config) Effective() (string, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	main := c.Main
	configured := len(main.IO.Outputs)
	main.IO.Outputs = implicitOutputs(main)
	if configured == 0 {
		buf.WriteString("# No [[io.outputs]] configured: apmkit writes line-protocol files (the implicit default below).\n")
	}
	if len(main.IO.Outputs) > max(configured, 1) {
		buf.WriteString("# io.explorer = true: apmkit keeps the explorer's local trace store (the implicit local output below).\n")
	}
	if err := enc.Encode(masked(reflect.ValueOf(main)).Interface()); err != nil {
		return "", err
	}
	byPlugin := map[string][]any{}
	for _, in := range c.Inputs {
		byPlugin[in.Plugin] = append(byPlugin[in.Plugin], masked(reflect.ValueOf(in.Config)).Interface())
	}
	if len(byPlugin) > 0 {
		buf.WriteString("\n")
		if err := enc.Encode(map[string]any{"inputs": byPlugin}); err != nil {
			return "", err
		}
	}
	return buf.String(), nil
}

// implicitOutputs is every output the uploader writes to, the implicit ones included, with
// their defaults.
func implicitOutputs(m Main) []apmio.OutputConfig {
	io := apmio.Config{Outputs: m.IO.WithImplicitOutputs(m.DataDir)}
	_ = io.Validate() // fills the defaults
	return io.Outputs
}

// masked returns a copy of v with secrets replaced; v itself is never modified.
func masked(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		return masked(v.Elem())
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(masked(v.Elem()))
		return p
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for _, f := range tomlFields(v.Type()) {
			fv := out.FieldByIndex(f.sf.Index)
			switch {
			case fv.Type() == secretType:
				// masks itself (MarshalText)
			case isSecret(f) && fv.Kind() == reflect.String && fv.String() != "":
				fv.SetString(secret.Mask(fv.String()))
			case fv.Kind() == reflect.String && (f.key == "url" || strings.HasSuffix(f.key, "_url")):
				fv.SetString(MaskURL(fv.String()))
			case fv.Kind() == reflect.String && f.key == "endpoint":
				fv.SetString(secret.Endpoint(fv.String()))
			case f.key == "headers" && fv.Type() == reflect.TypeOf(map[string]string(nil)):
				fv.Set(reflect.ValueOf(secret.Headers(fv.Interface().(map[string]string))))
			default:
				fv.Set(masked(fv))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() || v.Type().Elem().Kind() != reflect.Struct {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(masked(v.Index(i)))
		}
		return out
	}
	return v
}

var secretType = reflect.TypeOf(secret.Secret(""))

// isSecret says whether a field holds a secret: tagged `secret:"true"`, or named like one.
func isSecret(f field) bool {
	switch f.key {
	case "password", "token", "secret", "api_key":
		return true
	}
	return f.sf.Tag.Get("secret") == "true"
}

// MaskURL hides a URL's password and its token-like query parameters (secret.URL).
func MaskURL(s string) string { return secret.URL(s) }
