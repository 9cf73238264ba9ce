package monitor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Options configure Run.
type Options struct {
	// Addr is the HTTP API: host:port or a base URL. Default 127.0.0.1:9529.
	Addr string
	// Once prints one snapshot (totals, no rates) and returns.
	Once bool
	// Interval between refreshes of the live view. Default 1s.
	Interval time.Duration
	// MaxAgents caps the agent rows per input (0 = DefaultMaxAgents).
	MaxAgents int
	// Out receives the frames.
	Out io.Writer
	// Client fetches /v1/stats; nil = a client with a timeout shorter than the interval.
	Client *http.Client
}

// DefaultAddr is apmkit's default [http_api] listen address.
const DefaultAddr = "127.0.0.1:9529"

// Terminal control: cursor home then clear the screen. Each frame is written in one Write,
// so the terminal never shows half a frame.
const clearScreen = "\x1b[H\x1b[2J"

// Run shows the live view until ctx ends (nil error: Ctrl-C is how one leaves it), or prints
// one snapshot with Once. Only --once fails on an unreachable apmkit: the live view keeps
// retrying and says so, since apmkit may be restarting.
func Run(ctx context.Context, opts Options) error {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: max(opts.Interval, 5*time.Second)}
	}
	ropts := RenderOptions{Once: opts.Once, MaxAgents: opts.MaxAgents, Interval: opts.Interval}
	if opts.Once {
		snap, err := Fetch(ctx, client, opts.Addr)
		if err != nil {
			return err
		}
		return Render(opts.Out, snap, nil, ropts)
	}
	ticker := time.NewTicker(opts.Interval)
	defer ticker.Stop()
	var prev *Snapshot
	for {
		var frame bytes.Buffer
		frame.WriteString(clearScreen)
		snap, err := Fetch(ctx, client, opts.Addr)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(&frame, "apmkit monitor: %s at %s\n\n%v\n\nretrying every %s; Ctrl-C quits\n",
				"waiting for apmkit", BaseURL(opts.Addr), err, opts.Interval)
		default:
			if err := Render(&frame, snap, prev, ropts); err != nil {
				return err
			}
			prev = snap
		}
		if _, err := opts.Out.Write(frame.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
