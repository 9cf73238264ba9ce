package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCommandErrorsNameTheirSource(t *testing.T) {
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"ENV_DEFAULT_ENABLED_INPUTS=pinpoint", "ENV_INPUT_PINPOINT_SAMPLER=2"}, "ENV_INPUT_PINPOINT_SAMPLER=2: sampler.sampling_rate: 2 must be within 0..1"},
		{[]string{"ENV_DEFAULT_ENABLED_INPUTS=pinpoint", "ENV_INPUT_PINPOINT_ADDRESS=9991"}, `ENV_INPUT_PINPOINT_ADDRESS=9991: address: "9991" is not host:port`},
		{[]string{"ENV_DEFAULT_ENABLED_INPUTS=pinpoint", `ENV_INPUT_PINPOINT_CLOSE_RESOURCE={"*":["(["]}`}, `ENV_INPUT_PINPOINT_CLOSE_RESOURCE={"*":["(["]}: close_resource`},
		{[]string{"ENV_DATAWAY=https://openway.guance.com?token=tkn_REPLACE_ME"}, "placeholder (REPLACE_ME)"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			for _, kv := range c.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			code := run([]string{"config", "--conf-dir", t.TempDir()}, &out, &errOut)
			if code != 1 || !strings.Contains(errOut.String(), c.want) || strings.Contains(errOut.String(), "ENV_DEFAULT_ENABLED_INPUTS: pinpoint:") {
				t.Errorf("%v: exit %d, stderr %q; want %q", c.env, code, errOut.String(), c.want)
			}
		})
	}
}

func TestMissingConfDirIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, cmd := range []string{"config", "run"} {
		var out, errOut bytes.Buffer
		if code := run([]string{cmd, "--conf-dir", missing}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--conf-dir "+missing+": no such folder") {
			t.Errorf("%s: exit %d, stderr %q", cmd, code, errOut.String())
		}
	}
}

func TestConfigShowsDefaultsAndMasksSecrets(t *testing.T) {
	dir := t.TempDir()
	writeConf(t, dir, "apmkit.conf", `[[io.outputs]]
  type = "influxdb"
  url = "http://u:pw-0123456789@127.0.0.1:8086/?access_token=abcdefghijklmnop"
  database = "apm"
  [io.outputs.headers]
    Authorization = "Bearer sekret-0123456789"
`)
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "--conf-dir", dir, "--data-dir", "/d"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, leak := range []string{"pw-0123456789", "abcdefghijklmnop", "sekret-0123456789"} {
		if strings.Contains(out.String(), leak) {
			t.Errorf("%q printed:\n%s", leak, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"config", "--conf-dir", t.TempDir(), "--data-dir", "/d"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `dir = "/d/out"`) {
		t.Fatalf("implicit file output not shown: %d\n%s", code, out.String())
	}
}
