// Package agenttest runs a whole apmkit in-process for tests of the packages around the
// agent (the monitor, the CLI, the docs): configured through the environment as a container
// is, on loopback ports, with temp conf and data dirs.
package agenttest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	_ "github.com/apmkit/apmkit/inputs/all" // the inputs the environment may enable
	"github.com/apmkit/apmkit/internal/agent"
)

// Start runs apmkit with the Pinpoint input enabled on 127.0.0.1:0 (stat and span
// addresses off) and the HTTP API on 127.0.0.1:0; env adds or overrides variables. It is
// stopped when the test ends.
func Start(t testing.TB, env ...string) *agent.Agent {
	t.Helper()
	environ := append([]string{
		"ENV_DEFAULT_ENABLED_INPUTS=pinpoint",
		"ENV_INPUT_PINPOINT_ADDRESS=127.0.0.1:0",
		"ENV_INPUT_PINPOINT_STAT_ADDRESS=",
		"ENV_INPUT_PINPOINT_SPAN_ADDRESS=",
		"ENV_HTTP_LISTEN=127.0.0.1:0",
	}, env...)
	cfg, err := config.Load(config.Options{ConfDir: t.TempDir(), DataDir: t.TempDir(), Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if a.APIAddr() == "" {
		t.Fatal("the HTTP API did not start")
	}
	return a
}
