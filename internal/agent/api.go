package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/explorer"
	"github.com/apmkit/apmkit/inputs"
	"github.com/apmkit/apmkit/internal/version"
	"github.com/apmkit/apmkit/pipeline"
)

// apiServer serves /v1/ping, /v1/stats, /metrics and the explorer (everything else).
type apiServer struct {
	srv  *http.Server
	addr string
	done chan error
}

func startAPI(cfg config.HTTPAPI, a *Agent) (*apiServer, error) {
	listen := cfg.Listen
	if listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("http api: listen %q: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", a.handlePing)
	mux.HandleFunc("GET /v1/stats", a.handleStats)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", explorer.New(a.uploader.TraceStore(), explorer.Options{
		Token: cfg.Token, Username: cfg.Username, Password: cfg.Password,
	}))
	if a.uploader.TraceStore() != nil {
		warnIfOpen(a.log, ln.Addr(), cfg)
	}
	s := &apiServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// warnIfOpen says when the explorer, which shows URLs, SQL and exceptions, is reachable
// from other hosts without credentials.
func warnIfOpen(log *slog.Logger, addr net.Addr, cfg config.HTTPAPI) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() || cfg.Token.Reveal() != "" || cfg.Username != "" {
		return
	}
	log.Warn("http api: the explorer is open to the network without credentials; set [http_api] token, or username and password", "listen", addr.String())
}

func (s *apiServer) stop(ctx context.Context) error {
	if s == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// Ping is the /v1/ping answer.
type Ping struct {
	Version       string  `json:"version"`
	Hostname      string  `json:"hostname"`
	Uptime        string  `json:"uptime"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Status is "ok", or "degraded" while part of apmkit runs degraded; Degraded says what
	// and why, one sentence each. /v1/ping still answers 200 then: apmkit is up and takes
	// data, and a probe that restarted it would bring it back to the same full disk.
	Status   string   `json:"status"`
	Degraded []string `json:"degraded,omitempty"`
	// CacheState is the cache's state: ok, disk_full (writes refused) or memory (badger
	// closed), redis_down (writes kept in memory) or redis_catching_up; see cache.State.
	CacheState cache.State `json:"cache_state"`
}

func (a *Agent) handlePing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, a.ping())
}

func (a *Agent) ping() Ping {
	up := time.Since(a.started)
	p := Ping{Version: version.Version, Hostname: a.hostname, Uptime: up.Round(time.Second).String(), UptimeSeconds: up.Seconds(), Status: "ok"}
	if a.store != nil {
		var problem string
		p.CacheState, problem = a.store.State()
		if problem != "" {
			p.Status = "degraded"
			p.Degraded = append(p.Degraded, "cache: "+problem)
		}
	}
	return p
}

// InputStats is one input instance in /v1/stats.
type InputStats struct {
	Input    string         `json:"input"`
	Instance int            `json:"instance"`
	Alias    string         `json:"alias"`
	Source   string         `json:"source"`
	Stats    any            `json:"stats,omitempty"`
	Pipeline pipeline.Stats `json:"pipeline"`
}

// Stats is the /v1/stats answer.
type Stats struct {
	Ping
	Inputs     []InputStats `json:"inputs"`
	IO         any          `json:"io"`
	CacheBytes int64        `json:"cache_bytes"`
	Cache      *cache.Stats `json:"cache,omitempty"`
}

func (a *Agent) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, a.Stats())
}

// Stats snapshots the agent's state.
func (a *Agent) Stats() Stats {
	st := Stats{Ping: a.ping(), Inputs: []InputStats{}}
	for _, ri := range a.inputs {
		is := InputStats{Input: ri.plugin, Instance: ri.instance, Alias: ri.alias, Source: ri.source, Pipeline: ri.pipe.Stats()}
		if r, ok := ri.input.(inputs.StatsReporter); ok {
			is.Stats = r.Stats()
		}
		st.Inputs = append(st.Inputs, is)
	}
	if a.uploader != nil {
		st.IO = a.uploader.Stats()
	}
	if a.store != nil {
		cs := a.store.Stats()
		st.Cache, st.CacheBytes = &cs, cs.SizeBytes
	}
	return st
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
