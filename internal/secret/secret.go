// Package secret holds apmkit's one way of hiding secrets: the Secret type, which masks
// itself wherever it is printed (fmt, logs, TOML, JSON), and the maskers for URLs and HTTP
// headers that config printing, logs, errors and the monitor all use.
package secret

import (
	"log/slog"
	"net/url"
	"strings"
)

// Secret is a string that masks itself when printed, logged or marshalled. Reveal returns
// the value itself, for the code that sends it.
type Secret string

// Reveal returns the secret in clear.
func (s Secret) Reveal() string { return string(s) }

// String masks the secret (fmt's %s and %v).
func (s Secret) String() string { return Mask(string(s)) }

// GoString masks the secret (fmt's %#v).
func (s Secret) GoString() string { return `"` + Mask(string(s)) + `"` }

// MarshalText masks the secret in TOML and JSON.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Mask(string(s))), nil }

// UnmarshalText reads a secret from TOML or JSON.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// LogValue masks the secret in slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Mask(string(s))) }

var _ slog.LogValuer = Secret("")

// Mask hides a secret: long ones keep a recognisable prefix (tkn_) and their last 4
// characters, short ones are all stars. The empty string stays empty.
func Mask(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) < 12:
		return "****"
	}
	return s[:4] + "****" + s[len(s)-4:]
}

// URL hides a URL's secrets for logs, errors, Stats and `apmkit config`: the password of
// its user info and the values of token-like query parameters (token, access_token,
// password, secret, api_key...). An unparsable URL is not printed at all.
func URL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "****")
		}
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				continue
			}
			if name, err := url.QueryUnescape(k); err == nil && QueryKey(name) {
				if clear, err := url.QueryUnescape(v); err == nil {
					v = clear
				}
				params[i] = k + "=" + Mask(v)
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	// Keep the stars readable: they are not data that needs escaping.
	return strings.ReplaceAll(u.String(), "%2A", "*")
}

// Endpoint is URL for an endpoint that may be a URL or a bare host:port (an OTLP gRPC
// endpoint), which holds no secret and is not a URL.
func Endpoint(ep string) string {
	if strings.Contains(ep, "://") {
		return URL(ep)
	}
	return ep
}

// QueryKey says whether a URL query parameter carries a secret.
func QueryKey(k string) bool {
	switch strings.ToLower(k) {
	case "token", "password", "passwd", "pwd", "p", "secret", "api_key", "apikey", "access_token", "auth", "key":
		return true
	}
	k = strings.ToLower(k)
	return strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "password")
}

// HeaderKey says whether an HTTP header's value is a secret: Authorization, cookies, and
// any header whose name has token, key, secret or password in it.
func HeaderKey(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "authorization", "proxy-authorization", "cookie":
		return true
	}
	for _, w := range []string{"token", "key", "secret", "password", "auth"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Headers returns a copy of h with the values of secret headers masked.
func Headers(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if HeaderKey(k) {
			v = Mask(v)
		}
		out[k] = v
	}
	return out
}

// Placeholder says whether a credential is a placeholder copied from a sample or a
// manifest (tkn_REPLACE_ME, <token>, ${TOKEN}, changeme...) rather than a real one, and
// returns the part that shows it. Example values such as tkn_xxx are not refused here:
// they fail at the server like any wrong token.
func Placeholder(s string) (string, bool) {
	up := strings.ToUpper(s)
	for _, p := range []string{"REPLACE_ME", "REPLACEME", "REPLACE-ME", "CHANGE_ME", "CHANGEME", "YOUR_TOKEN", "YOUR-TOKEN", "<TOKEN>", "<YOUR"} {
		if strings.Contains(up, p) {
			return p, true
		}
	}
	if i := strings.IndexByte(s, '<'); i >= 0 && strings.IndexByte(s[i:], '>') > 0 {
		return s[i : i+strings.IndexByte(s[i:], '>')+1], true
	}
	if i := strings.Index(s, "${"); i >= 0 && strings.IndexByte(s[i:], '}') > 0 {
		return s[i : i+strings.IndexByte(s[i:], '}')+1], true
	}
	return "", false
}
