// Package monitor is `apmkit monitor`: it reads a running apmkit's /v1/stats and renders it
// as text, either once (for scripts) or as a live terminal view redrawn every second with
// per-second rates computed from two consecutive snapshots.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint"
	"github.com/apmkit/apmkit/internal/agent"
	apmio "github.com/apmkit/apmkit/io"
	"github.com/apmkit/apmkit/pipeline"
)

// Snapshot is one /v1/stats answer. It reuses the agent's own types wherever they are
// concrete, so a renamed JSON field breaks the build or the integration test, not the view.
type Snapshot struct {
	agent.Ping
	Inputs     []Input      `json:"inputs"`
	IO         apmio.Stats  `json:"io"`
	CacheBytes int64        `json:"cache_bytes"`
	Cache      *cache.Stats `json:"cache"` // nil from an apmkit older than the cache's states

	// URL is where the snapshot was read and At when (the client's clock): "last seen"
	// ages are relative to At. Neither is part of the JSON.
	URL string    `json:"-"`
	At  time.Time `json:"-"`
}

// Input is one input instance of a snapshot. Stats stays raw because its shape belongs to
// the input; the monitor decodes the inputs it knows (Pinpoint).
type Input struct {
	Input    string          `json:"input"`
	Instance int             `json:"instance"`
	Source   string          `json:"source"`
	Stats    json.RawMessage `json:"stats,omitempty"`
	Pipeline pipeline.Stats  `json:"pipeline"`

	Pinpoint *pinpoint.Stats `json:"-"`
}

// maxBody bounds what Fetch reads: /v1/stats lists at most 10,000 agents, well below it.
const maxBody = 64 << 20

// BaseURL turns --addr (host:port, or a URL for an API behind a proxy) into a base URL.
func BaseURL(addr string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return addr
	}
	return "http://" + addr
}

// Fetch reads one snapshot from the HTTP API at addr.
func Fetch(ctx context.Context, client *http.Client, addr string) (*Snapshot, error) {
	url := BaseURL(addr) + "/v1/stats"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w (is apmkit running with its HTTP API there? see --addr and [http_api] listen)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("monitor: reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("monitor: GET %s: %s: %.200s", url, resp.Status, body)
	}
	snap, err := Decode(body)
	if err != nil {
		return nil, fmt.Errorf("monitor: %s: %w", url, err)
	}
	snap.URL, snap.At = url, time.Now()
	return snap, nil
}

// Decode parses a /v1/stats body and the stats of the inputs the monitor knows.
func Decode(body []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("not a /v1/stats answer: %w", err)
	}
	if s.Version == "" {
		return nil, errors.New("not a /v1/stats answer: no version")
	}
	for i := range s.Inputs {
		in := &s.Inputs[i]
		if in.Input != pinpoint.Name || len(in.Stats) == 0 || string(in.Stats) == "null" {
			continue
		}
		var st pinpoint.Stats
		if err := json.Unmarshal(in.Stats, &st); err != nil {
			return nil, fmt.Errorf("input %s #%d: %w", in.Input, in.Instance, err)
		}
		in.Pinpoint = &st
	}
	return &s, nil
}
