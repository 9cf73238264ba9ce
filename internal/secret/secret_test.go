package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestSecretMasksItselfEverywhere(t *testing.T) {
	s := Secret("influx-token-0123456789")
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", s)
	js, _ := json.Marshal(struct{ T Secret }{s})
	var tm bytes.Buffer
	if err := toml.NewEncoder(&tm).Encode(struct {
		T Secret `toml:"token"`
	}{s}); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%s": fmt.Sprintf("%s", s), "%v": fmt.Sprintf("%v", s), "%#v": fmt.Sprintf("%#v", s),
		"err": fmt.Errorf("bad %v", s).Error(), "slog": logs.String(), "json": string(js), "toml": tm.String(),
	} {
		if strings.Contains(out, "0123456789") || !strings.Contains(out, "infl****6789") {
			t.Errorf("%s: %q", name, out)
		}
	}
	if s.Reveal() != "influx-token-0123456789" {
		t.Fatal("Reveal")
	}
	var back struct {
		T Secret `toml:"token"`
	}
	if _, err := toml.Decode(`token = "abc"`, &back); err != nil || back.T.Reveal() != "abc" {
		t.Fatalf("decode: %v %q", err, back.T.Reveal())
	}
}

func TestURLAndHeaders(t *testing.T) {
	for in, want := range map[string]string{
		"https://openway.guance.com?token=tkn_0123456789abcdef": "https://openway.guance.com?token=tkn_****cdef",
		"http://user:pass@127.0.0.1:8086/":                      "http://user:****@127.0.0.1:8086/",
		"https://h/?access_token=abc&db=x&password=pw":          "https://h/?access_token=****&db=x&password=****",
		"https://h/v1/write?x=1":                                "https://h/v1/write?x=1",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Endpoint("collector:4317"); got != "collector:4317" {
		t.Errorf("Endpoint(host:port) = %q", got)
	}
	if got := Endpoint("https://h:4318/?api_key=abcdefghijklmn"); got != "https://h:4318/?api_key=abcd****klmn" {
		t.Errorf("Endpoint(URL) = %q", got)
	}
	h := Headers(map[string]string{"Authorization": "Bearer abcdefghijkl", "X-Api-Key": "k", "X-Auth-Token": "t", "X-Tenant": "shop"})
	if h["Authorization"] != "Bear****ijkl" || h["X-Api-Key"] != "****" || h["X-Auth-Token"] != "****" || h["X-Tenant"] != "shop" {
		t.Fatalf("%v", h)
	}
}

func TestPlaceholder(t *testing.T) {
	for _, tok := range []string{"tkn_REPLACE_ME", "<token>", "tkn_<your-token>", "${DATAWAY_TOKEN}", "changeme", "YOUR_TOKEN"} {
		if _, ok := Placeholder(tok); !ok {
			t.Errorf("%q is not seen as a placeholder", tok)
		}
	}
	for _, tok := range []string{"tkn_xxx", "tkn_0123456789abcdef", "tkn_replaced_metrics"} {
		if p, ok := Placeholder(tok); ok {
			t.Errorf("%q refused as a placeholder (%s)", tok, p)
		}
	}
}
