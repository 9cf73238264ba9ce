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
		code int // 2: a command line the command does not understand
		want string
	}{
		{[]string{"monitor", "--once", "--addr", closed}, 1, closed},
		{[]string{"monitor", "--frobnicate"}, 2, "flag provided but not defined"},
		{[]string{"monitor", "extra"}, 2, `unexpected arguments ["extra"]`},
		{[]string{"monitor", "--interval", "0s"}, 1, "must be > 0"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != c.code || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %d and %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
}
