package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// buildBinary builds apmkit once for the subprocess tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "apmkit")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestRunPingAndGracefulStop starts apmkit with no config file and the Pinpoint input
// enabled from the environment, checks /v1/ping, then stops it with SIGTERM: exit 0.
func TestRunPingAndGracefulStop(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil { // a given --conf-dir must exist
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--conf-dir", filepath.Join(dir, "conf.d"), "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"ENV_DEFAULT_ENABLED_INPUTS=pinpoint",
		"ENV_INPUT_PINPOINT_ADDRESS=127.0.0.1:0",
		"ENV_INPUT_PINPOINT_STAT_ADDRESS=",
		"ENV_INPUT_PINPOINT_SPAN_ADDRESS=",
		"ENV_HTTP_LISTEN=127.0.0.1:0",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var log strings.Builder
	running := regexp.MustCompile(`apmkit is running.*http_api=(\S+)`)
	apiAddr := ""
	deadline := time.After(60 * time.Second)
	for apiAddr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("apmkit exited before running:\n%s", log.String())
			}
			log.WriteString(line + "\n")
			if m := running.FindStringSubmatch(line); m != nil {
				apiAddr = m[1]
			}
		case <-deadline:
			t.Fatalf("apmkit did not report running within 60 s:\n%s", log.String())
		}
	}
	if !strings.Contains(log.String(), `output="file: `+filepath.Join(dir, "data", "out")) {
		t.Errorf("the log does not say where apmkit writes:\n%s", log.String())
	}
	resp, err := http.Get("http://" + apiAddr + "/v1/ping")
	if err != nil {
		t.Fatal(err)
	}
	var ping struct {
		Version string `json:"version"`
		Uptime  string `json:"uptime"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ping)
	resp.Body.Close()
	if err != nil || ping.Version == "" || ping.Uptime == "" {
		t.Fatalf("ping %+v %v", ping, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain so apmkit never blocks on a full pipe
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("apmkit did not stop within 60 s of SIGTERM")
	}
}

func TestBadConfigRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "apmkit.conf"), []byte("[log]\nlevel = \"loud\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"run", "--conf-dir", dir}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), `log.level: "loud" is not one of debug, info, warn, error`) {
		t.Fatalf("stderr %q", errOut.String())
	}
}

func TestSubcommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "apmkit ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"sample", "pinpoint"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "[[inputs.pinpoint]]") {
		t.Fatalf("sample: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"sample"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "[http_api]") || !strings.Contains(out.String(), "[[inputs.pinpoint]]") {
		t.Fatalf("sample all: %d", code)
	}
	if code := run([]string{"sample", "nope"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `unknown input "nope"`) {
		t.Fatalf("sample nope: %d %q", code, errOut.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatal("unknown command accepted")
	}
}

func TestConfigPrintsEffectiveConfigMasked(t *testing.T) {
	t.Setenv("ENV_DATAWAY", "https://openway.example?token=tkn_topsecret")
	t.Setenv("ENV_DEFAULT_ENABLED_INPUTS", "pinpoint")
	t.Setenv("ENV_INPUT_PINPOINT_SAMPLER", "0.5")
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "--conf-dir", t.TempDir()}, &out, &errOut); code != 0 {
		t.Fatalf("config: %d %s", code, errOut.String())
	}
	text := out.String()
	if strings.Contains(text, "tkn_topsecret") || !strings.Contains(text, "token=tkn_****cret") {
		t.Fatalf("token not masked:\n%s", text)
	}
	if !strings.Contains(text, "sampling_rate = 0.5") || !strings.Contains(text, `type = "dataway"`) {
		t.Fatalf("env not applied:\n%s", text)
	}
}

// The command line behaves as Go tools do: help on stdout with exit 0, each command's flags
// with -h, the version with --version, unknown commands and flags exit 2 on stderr.
func TestCommandLineHelpAndVersion(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr ("" = must be empty)
	}{
		{[]string{"-h"}, 0, "apmkit COMMAND -h", ""},
		{[]string{"--help"}, 0, "Usage:\n  apmkit [run]", ""},
		{[]string{"help"}, 0, "apmkit monitor", ""},
		{[]string{"--version"}, 0, "apmkit ", ""},
		{[]string{"version"}, 0, "apmkit ", ""},
		{[]string{"run", "-h"}, 0, "Usage: apmkit run [--conf-dir DIR] [--data-dir DIR]\n  -conf-dir string", ""},
		{[]string{"config", "--help"}, 0, "Usage: apmkit config", ""},
		{[]string{"sample", "-h"}, 0, "Usage: apmkit sample [INPUT...]", ""},
		{[]string{"monitor", "-h"}, 0, "-once", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"run", "--bogus"}, 2, "", "flag provided but not defined: -bogus (see apmkit run -h)"},
		{[]string{"monitor", "extra"}, 2, "", `unexpected arguments ["extra"]`},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(c.args, &out, &errOut)
		if code != c.code || !containsOrEmpty(out.String(), c.out) || !containsOrEmpty(errOut.String(), c.err) {
			t.Errorf("apmkit %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(c.args, " "), code, out.String(), errOut.String(), c.code, c.out, c.err)
		}
	}
}

func containsOrEmpty(s, sub string) bool {
	if sub == "" {
		return s == ""
	}
	return strings.Contains(s, sub)
}
