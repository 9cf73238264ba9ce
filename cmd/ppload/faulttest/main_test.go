package faulttest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// bins holds the binaries TestMain builds: apmkit, ppload and ppchurn. They run as
// subprocesses so SIGTERM and SIGKILL are real, and without the race detector, whose cost
// would distort memory and load; the race detector covers this test process.
var bins = map[string]string{}

// inCI is set by .ci/run: there a test that cannot run fails instead of skipping.
var inCI = os.Getenv("CI") == "true"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "apmkit-faulttest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faulttest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	flag.Parse()
	// -short skips these tests (outside CI) and -list runs none: neither needs the builds.
	if (testing.Short() && !inCI) || flag.Lookup("test.list").Value.String() != "" {
		return m.Run()
	}
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faulttest: build:", err)
		return 1
	}
	return m.Run()
}

func build(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"apmkit":  "./cmd/apmkit",
		"ppload":  "./cmd/ppload",
		"ppchurn": "./cmd/ppload/faulttest/ppchurn",
	} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
		bins[name] = out
	}
	return detectUploader(dir)
}

// detectUploader reads from apmkit's effective config (`apmkit config`, defaults filled
// in) which memory bound its uploader has and how many requests an output sends at once.
func detectUploader(dir string) error {
	probe := filepath.Join(dir, "probe")
	if err := os.MkdirAll(probe, 0o755); err != nil {
		return err
	}
	conf := "[[io.outputs]]\n  type = \"dataway\"\n  url = \"http://127.0.0.1:1?token=tkn_probe\"\n"
	if err := os.WriteFile(filepath.Join(probe, "apmkit.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(bins["apmkit"], "config", "--conf-dir", probe, "--data-dir", filepath.Join(probe, "data")).Output()
	if err != nil {
		return fmt.Errorf("apmkit config: %w", err)
	}
	effective := string(out)
	switch {
	case strings.Contains(effective, "queue_max_mb"):
		uploaderModel.bytes = true
	case strings.Contains(effective, "queue_max_points"):
	default:
		return errors.New("apmkit's config has neither io.queue_max_mb nor io.queue_max_points: adapt the fault tests to the uploader's memory bound")
	}
	uploaderModel.inFlight = 1
	if m := regexp.MustCompile(`(?m)^\s*max_in_flight\s*=\s*(\d+)`).FindStringSubmatch(effective); m != nil {
		uploaderModel.inFlight, _ = strconv.Atoi(m[1])
	}
	return nil
}

// moduleRoot is the folder of go.mod, found from this source file's folder (go test runs
// in the package folder).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// requireLinux fails (in CI) or skips (elsewhere) where /proc is missing: memory and
// goroutine checks read /proc/<pid>/status.
func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "linux" {
		return
	}
	if inCI {
		t.Fatalf("fault tests need Linux /proc (GOOS=%s); CI must run them", runtime.GOOS)
	}
	t.Skipf("fault tests need Linux /proc (GOOS=%s)", runtime.GOOS)
}

// short skips the fault tests under -short, except in CI, where they must run.
func short(t *testing.T) {
	t.Helper()
	requireLinux(t)
	if testing.Short() && !inCI {
		t.Skip("fault tests take minutes: skipped with -short")
	}
}
