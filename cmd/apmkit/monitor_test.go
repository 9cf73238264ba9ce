package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/internal/agent/agenttest"
)

// TestMonitorOnce runs `apmkit monitor --once` against an apmkit started in-process with
// its API on a loopback port: exit 0 and a snapshot naming the input and its listener.
func TestMonitorOnce(t *testing.T) {
	a := agenttest.Start(t)

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
