package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs/pinpoint/replay"
	"github.com/apmkit/apmkit/internal/agent/agenttest"
	"github.com/apmkit/apmkit/internal/monitor"
)

const root = "../.."

func TestConfigDocMatchesTheCode(t *testing.T) {
	got, err := os.ReadFile(filepath.Join(root, "docs", "CONFIG.md"))
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if string(got) != config.Reference() {
		t.Error("docs/CONFIG.md drifted from the config structs: run make docs and commit it")
	}
}

// envConstants reads the Env* string constants of config/env.go: the variables apmkit
// reads. Parsing the source finds a new one even before anyone documents it.
func envConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "config", "env.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, "Env") || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				consts[name.Name], _ = strconv.Unquote(lit.Value)
			}
		}
		return true
	})
	if len(consts) < 5 {
		t.Fatalf("found only %v in config/env.go: has it moved?", consts)
	}
	return consts
}

func TestEveryEnvironmentVariableIsDocumented(t *testing.T) {
	for name, value := range envConstants(t) {
		if !config.DocumentsEnv(value) {
			t.Errorf("config.%s (%s) is not described in docs/gen's mainEnvDocs and mainEnvOrder", name, value)
		}
	}
	readme := readme(t)
	for _, value := range envConstants(t) {
		if value != config.EnvInputPrefix && !strings.Contains(readme, "`"+value+"`") {
			t.Errorf("README.md does not mention %s", value)
		}
	}
}

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var (
	metricLine   = regexp.MustCompile(`(?m)^# TYPE (apmkit_[a-z0-9_]+) `)
	readmeMetric = regexp.MustCompile("`(apmkit_[a-z0-9_]+)`")
)

// scrapeMetrics runs apmkit in-process, replays a recording through it and returns the
// apmkit_* metric names /metrics exposes.
func scrapeMetrics(t *testing.T) []string {
	t.Helper()
	a := agenttest.Start(t, "ENV_INPUT_PINPOINT_KEEP_RARE_RESOURCE=true")
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	snap, err := monitor.Fetch(context.Background(), client, a.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := replay.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := replay.Load(filepath.Join(dir, "go-agent-stream-100.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rec.Replay(ctx, replay.Targets{Agent: snap.Inputs[0].Pinpoint.Listeners[0]}); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get("http://" + a.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range metricLine.FindAllStringSubmatch(string(body), -1) {
		names = append(names, m[1])
	}
	return names
}

// goSources is the text of the non-test Go files of the repository (generated code aside).
func goSources(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "pb" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		b.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestReadmeListsEverySelfMetric: every apmkit_* metric a running apmkit exposes after real
// traffic is listed in the README's self-metrics section, and every metric listed there is
// either exposed or named in the code (metrics of rare events, such as handler panics,
// appear on /metrics only once they happen).
func TestReadmeListsEverySelfMetric(t *testing.T) {
	text := readme(t)
	start := strings.Index(text, "\n## Self-metrics")
	if start < 0 {
		t.Fatal(`README.md has no "## Self-metrics" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	listed := map[string]bool{}
	for _, m := range readmeMetric.FindAllStringSubmatch(section, -1) {
		listed[m[1]] = true
	}
	scraped := scrapeMetrics(t)
	if len(scraped) < 10 {
		t.Fatalf("only %d apmkit metrics scraped: %v", len(scraped), scraped)
	}
	for _, name := range scraped {
		if !listed[name] {
			t.Errorf("%s is exposed on /metrics but not listed in README.md's Self-metrics", name)
		}
	}
	src := goSources(t)
	for name := range listed {
		if slices.Contains(scraped, name) {
			continue
		}
		// Metrics named by a prefix constant plus a suffix: look for the suffix in quotes.
		found := strings.Contains(src, `"`+name+`"`)
		for _, prefix := range []string{"apmkit_pinpoint_trace_", "apmkit_io_"} {
			if rest, ok := strings.CutPrefix(name, prefix); ok && strings.Contains(src, `"`+rest+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("README.md lists %s, which apmkit neither exposes nor names in its code", name)
		}
	}
}
