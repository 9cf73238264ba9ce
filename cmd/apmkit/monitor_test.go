package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/internal/agent"
)

// TestMonitorOnce runs `apmkit monitor --once` against an apmkit started in-process with
// its API on a loopback port: exit 0 and a snapshot naming the input and its listener.
func TestMonitorOnce(t *testing.T) {
	cfg, err := config.Load(config.Options{ConfDir: t.TempDir(), DataDir: t.TempDir(), Environ: []string{
		"ENV_DEFAULT_ENABLED_INPUTS=pinpoint",
		"ENV_INPUT_PINPOINT_ADDRESS=127.0.0.1:0",
		"ENV_INPUT_PINPOINT_STAT_ADDRESS=",
		"ENV_INPUT_PINPOINT_SPAN_ADDRESS=",
		"ENV_HTTP_LISTEN=127.0.0.1:0",
	}})
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
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	}()

	var out, errOut bytes.Buffer
	if code := run([]string{"monitor", "--once", "--addr", a.APIAddr()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "INPUT pinpoint #1") || !strings.Contains(out.String(), "listening   127.0.0.1:") {
		t.Errorf("snapshot:\n%s", out.String())
	}
}

func TestMonitorErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"monitor", "--once", "--addr", closed}, closed},
		{[]string{"monitor", "--frobnicate"}, "flag provided but not defined"},
		{[]string{"monitor", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"monitor", "--interval", "0s"}, "must be > 0"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errOut.String(), c.want)
		}
	}
}
