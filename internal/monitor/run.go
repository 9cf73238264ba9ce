package monitor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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
	// Terminal clears the screen before each frame of the live view. Without it (and when
	// Out is not a terminal: a pipe, a file) frames are plain text separated by a blank
	// line, without escape codes.
	Terminal bool
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
	terminal := opts.Terminal || isTerminal(opts.Out)
	ticker := time.NewTicker(opts.Interval)
	defer ticker.Stop()
	var prev *Snapshot
	frames := 0
	for {
		var frame bytes.Buffer
		if terminal {
			frame.WriteString(clearScreen)
		} else if prev != nil || frames > 0 {
			frame.WriteString("\n")
		}
		frames++
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

// isTerminal reports whether w is a character device (a terminal), not a pipe or a file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
