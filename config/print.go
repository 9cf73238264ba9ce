package config

import (
	"bytes"
	"net/url"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// Mask is what secrets print as.
const Mask = "******"

// Effective renders the effective configuration (defaults, files and environment) as TOML,
// with secrets masked: fields tagged `secret:"true"` or named password, token, secret or
// api_key, the token query of URLs and passwords in URLs.
func (c *Config) Effective() (string, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	if err := enc.Encode(masked(reflect.ValueOf(c.Main)).Interface()); err != nil {
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
			case isSecret(f) && fv.Kind() == reflect.String && fv.String() != "":
				fv.SetString(Mask)
			case fv.Kind() == reflect.String && f.key == "url":
				fv.SetString(MaskURL(fv.String()))
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

// isSecret says whether a field holds a secret: tagged `secret:"true"`, or named like one.
func isSecret(f field) bool {
	switch f.key {
	case "password", "token", "secret", "api_key":
		return true
	}
	return f.sf.Tag.Get("secret") == "true"
}

// MaskURL hides a URL's password and its token query parameter.
func MaskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Mask)
	}
	params := strings.Split(u.RawQuery, "&")
	for i, p := range params {
		if strings.HasPrefix(p, "token=") {
			params[i] = "token=" + Mask
		}
	}
	u.RawQuery = strings.Join(params, "&")
	return u.String()
}
