package faulttest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// http2Preface is what an HTTP/2 (gRPC) client sends first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// TestGarbageOnGRPCPort sends random bytes, HTTP/1.1 requests and a valid preface followed
// by garbage frames to apmkit's gRPC port, and holds half-open connections (connected and
// silent; a partial HTTP/2 preface, then silent) while agents work: an agent connected
// before keeps its ping session and its spans, a new agent registers and sends spans, and
// every acknowledged span arrives exactly once.
func TestGarbageOnGRPCPort(t *testing.T) {
	short(t)
	s := startSink(t)
	ap := startApmkit(t, s.url, defaultIOConf())
	before := startTestLoad(t, ap.grpcAddr, "before", 1, 50, 100*time.Millisecond)

	// Half-open connections stay open for the rest of the test.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 100 {
		c, err := net.DialTimeout("tcp", ap.grpcAddr, 10*time.Second)
		if err != nil {
			t.Fatalf("half-open connection %d: %v", i, err)
		}
		if i%2 == 1 {
			if _, err := io.WriteString(c, http2Preface[:len(http2Preface)/2]); err != nil {
				t.Fatalf("partial preface: %v", err)
			}
		}
		held = append(held, c)
	}

	rng := rand.New(rand.NewPCG(7, 7))
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	garbage := map[string][]byte{
		"random bytes":        randomBytes(64 << 10),
		"HTTP/1.1 GET":        []byte("GET / HTTP/1.1\r\nHost: apmkit\r\n\r\n"),
		"HTTP/1.1 gRPC POST":  []byte("POST /v1.Span/SendSpanBatch HTTP/1.1\r\nHost: apmkit\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\nhello"),
		"preface + garbage":   append([]byte(http2Preface), randomBytes(16<<10)...),
		"preface + bad frame": append([]byte(http2Preface), 0, 0, 4, 0x4 /* SETTINGS */, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff),
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closedErrs []error
	for name, payload := range garbage {
		for i := range 10 {
			wg.Go(func() {
				if err := sendGarbage(ap.grpcAddr, payload); err != nil {
					mu.Lock()
					closedErrs = append(closedErrs, fmt.Errorf("%s #%d: %w", name, i, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, err := range closedErrs {
		t.Errorf("garbage connection: %v", err)
	}

	// With the garbage sent and the half-open connections still held, a new agent must
	// get in and be served.
	after := startTestLoad(t, ap.grpcAddr, "after", 1, 50, 100*time.Millisecond)
	waitFor(t, 30*time.Second, "spans of the agent connected after the garbage acknowledged", func() (bool, string) {
		n := after.Ledger().Snapshot().AckedCount()
		return n >= 50, fmt.Sprintf("%d acknowledged", n)
	})
	if !ap.running() {
		t.Fatal("apmkit exited")
	}
	for _, l := range []*Load{before, after} {
		if err := l.Stop(); err != nil {
			t.Errorf("load: %v", err)
		}
	}
	snaps := []Snapshot{before.Ledger().Snapshot(), after.Ledger().Snapshot()}
	for i, name := range []string{"agent connected before the garbage", "agent connected after the garbage"} {
		checkNoCallFailed(t, name, snaps[i])
		if snaps[i].Pings < 5 {
			t.Errorf("%s: %d pings answered", name, snaps[i].Pings)
		}
	}
	waitDrained(t, ap, s, snaps...)
	view := s.view()
	for i, prefix := range []string{loadPrefix("before"), loadPrefix("after")} {
		d := compare(snaps[i], view, prefix)
		t.Logf("%s: %v", prefix, d)
		checkExactlyOnce(t, d)
	}
	m := ap.metrics()
	if n := m.sum("apmkit_pinpoint_handler_panics_total"); n > 0 {
		t.Errorf("%v handler panics", n)
	}
}

// sendGarbage writes payload on a new connection and waits for apmkit to close it: a
// server that keeps reading garbage (or answers and waits for more) holds resources.
// Writing may fail once apmkit has closed the connection; that is fine.
func sendGarbage(addr string, payload []byte) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, _ = c.Write(payload)
	// Bounded: a connection apmkit never closes fails the test instead of hanging it.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // whatever apmkit answers (an HTTP/1.1 error, a GOAWAY) before closing
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("apmkit kept the connection open for 30 s")
		}
		return nil // EOF or reset: closed
	}
}
