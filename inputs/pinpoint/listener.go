package pinpoint

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimit is max_connections, shared by every listener of an input: connections beyond
// it are closed as soon as they are accepted, so an agent sees its connection fail at once
// and retries later, rather than waiting in the kernel's backlog until its dial times out.
// Each connection costs memory whatever it sends (gRPC's buffers and goroutines, and up to
// a flow-control window per stream), which the receive budget does not cover.
type connLimit struct {
	max     int64 // 0: no limit
	open    atomic.Int64
	refused prometheus.Counter
	log     *slog.Logger
	lastLog atomic.Int64 // unix ns of the last "limit reached" log line
}

func newConnLimit(max int, log *slog.Logger) *connLimit {
	return &connLimit{
		max: int64(max),
		log: log,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apmkit_pinpoint_connections_refused_total",
			Help: "Agent connections closed at once because max_connections were open.",
		}),
	}
}

func (l *connLimit) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		l.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apmkit_pinpoint_connections", Help: "Open agent connections (of max_connections).",
		}, func() float64 { return float64(l.open.Load()) }),
	}
}

// wrap limits ln's connections.
func (l *connLimit) wrap(ln net.Listener) net.Listener { return &limitListener{Listener: ln, limit: l} }

type limitListener struct {
	net.Listener
	limit *connLimit
}

// Accept returns the next connection within the limit; those beyond it are closed.
func (ln *limitListener) Accept() (net.Conn, error) {
	l := ln.limit
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.max > 0 && n > l.max {
			l.open.Add(-1)
			c.Close()
			l.refused.Inc()
			l.logRefused()
			continue
		}
		return &limitedConn{Conn: c, limit: l}, nil
	}
}

// logRefused says once a minute that connections are refused: the counter says how many.
func (l *connLimit) logRefused() {
	if l.log == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(time.Minute) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("pinpoint: max_connections reached; new agent connections are closed until others end",
		"max_connections", l.max)
}

// limitedConn gives its place back when closed (once, however often Close is called).
type limitedConn struct {
	net.Conn
	limit *connLimit
	once  sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limit.open.Add(-1) })
	return err
}
