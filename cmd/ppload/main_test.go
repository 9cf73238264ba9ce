package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-addr", "127.0.0.1:1", "-span-addr", "127.0.0.1:3", "-agents", "3",
		"-transport", "stream", "-duration", "5s", "-events", "25", "-linked-frac", "1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AgentAddr != "127.0.0.1:1" || cfg.SpanAddr != "127.0.0.1:3" || cfg.StatAddr != "" || cfg.Agents != 3 ||
		cfg.Transport != "stream" || cfg.Duration != 5*time.Second || cfg.Gen.Events != 25 || cfg.Gen.LinkedFrac != 1 {
		t.Errorf("%+v", cfg)
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"-transport", "udp"}, {"-events", "3"}, {"-chunk-frac", "2"}, {"extra"}} {
		var stderr bytes.Buffer
		if code := run(args, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "ppload:") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and an error", args, code, stderr.String())
		}
	}
	if code := run([]string{"-h"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}
