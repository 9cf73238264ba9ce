//go:build linux

package faulttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diskSize is the tmpfs that holds apmkit's data dir in TestDiskFull: a few times the cache's
// reserve (10 MiB by default), so the output spill and a filler file fill it quickly.
const diskSize = "24m"

// TestDiskFull runs apmkit with its data dir on a small real file system (a tmpfs mounted by
// the test) while its output is down, so the spill grows, and fills that file system to the
// last byte. badger writes through memory maps, where a full disk used to kill apmkit with
// SIGBUS ("fatal error: fault"), at once or when it stopped; the explorer's store, on here,
// is a badger database too. Now apmkit must stay up and say disk_full on /v1/ping, exit 0 on
// SIGTERM, start again on the still-full disk (the cache in memory, the explorer's store
// closed), recover by itself once the test frees space (cache back to ok), and deliver the
// spill once the output comes up.
func TestDiskFull(t *testing.T) {
	short(t)
	mnt := mountTmpfs(t, diskSize)
	// The output's address, with nothing listening until the test brings the sink up.
	outAddr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	c := defaultIOConf()
	c.CapacityMB = 2  // the spill: its capacity is not what fills the disk, the filler is
	c.Explorer = true // the explorer's store is a badger database too: it must not fault either
	ap := startApmkitOn(t, "http://"+outAddr, c, filepath.Join(mnt, "data"))
	if p := ap.ping(); p.CacheState != "ok" || p.Status != "ok" {
		t.Fatalf("apmkit on an empty %s tmpfs: %+v", diskSize, p)
	}
	load := startTestLoad(t, ap.grpcAddr, "diskfull", 2, 100, 0)
	waitFor(t, 60*time.Second, "batches in the spill (the output is down)", func() (bool, string) {
		n := ap.metrics().sum("apmkit_io_spill_batches")
		return n >= 5, fmt.Sprintf("%v batches in the spill", n)
	})

	// Fill the file system to the last byte while the load goes on, at the pace of a busy
	// writer rather than all at once (see the README on the residual risk).
	filler := filepath.Join(mnt, "filler")
	fillUp(t, filler)
	waitFor(t, 30*time.Second, "/v1/ping to say disk_full", func() (bool, string) {
		p := ap.ping()
		return p.CacheState == "disk_full" && p.Status == "degraded", fmt.Sprintf("%+v", p)
	})
	// New agents register while the disk is full: their agent info and metadata are cache
	// writes, refused and counted; the process goes on.
	late := startTestLoad(t, ap.grpcAddr, "late", 1, 20, 0)
	waitFor(t, 30*time.Second, "cache writes refused as disk_full", func() (bool, string) {
		n := ap.metrics().sum("apmkit_cache_writes_refused_total", "reason=disk_full")
		return n > 0, fmt.Sprintf("%v refused", n)
	})
	time.Sleep(3 * time.Second) // the load goes on against the full disk: the scenario, not a wait
	if !ap.running() {
		t.Fatalf("apmkit died on the full disk:\n%s", crashOf(ap.logPath))
	}
	if p := ap.ping(); p.CacheState != "disk_full" {
		t.Errorf("the cache left disk_full while the disk is still full: %+v", p)
	}
	checkNoFault(t, ap)

	// A graceful stop on the full disk: the inputs persist what they hold (refused), the
	// spill cannot take the queues, the cache cannot flush: all errors, exit 0.
	if code := ap.terminate(); code != 0 {
		t.Fatalf("apmkit exited %d on SIGTERM with the disk full, want 0\n%s", code, tail(ap.logPath, 40))
	}
	checkNoFault(t, ap)

	// Start again on the still-full disk: the cache runs in memory.
	ap.restart()
	p := ap.ping()
	if p.CacheState != "memory" || p.Status != "degraded" || len(p.Degraded) == 0 {
		t.Fatalf("apmkit started on a full disk: /v1/ping %+v, want cache_state memory, status degraded", p)
	}
	t.Logf("started on the full disk: %s", p.Degraded[0])
	time.Sleep(2 * time.Second) // the agents reconnect and send to the degraded apmkit: the scenario
	if !ap.running() {
		t.Fatalf("apmkit died on the full disk after its restart:\n%s", tail(ap.logPath, 40))
	}

	// Space returns: the cache opens badger again by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the cache back to ok once space returned", func() (bool, string) {
		p := ap.ping()
		return p.CacheState == "ok" && p.Status == "ok", fmt.Sprintf("%+v; %d bytes free", p, freeBytes(t, mnt))
	})

	// The output comes up: what the spill kept is delivered, and new spans too.
	s := startSinkOn(t, outAddr)
	waitFor(t, 90*time.Second, "spans at the output and the spill drained", func() (bool, string) {
		spill := ap.metrics().sum("apmkit_io_spill_batches")
		return s.entryCount() > 0 && spill == 0, fmt.Sprintf("%d spans at the sink, %v batches in the spill", s.entryCount(), spill)
	})
	for _, l := range []*Load{late, load} {
		if err := l.Stop(); err != nil {
			t.Logf("load: %v", err) // calls failed while apmkit was down: expected
		}
	}
	m := ap.metrics()
	t.Logf("after recovery: %d spans at the sink; cache refused %v writes (disk_full) in this run; tracing drops %v",
		s.entryCount(), m.sum("apmkit_cache_writes_refused_total", "reason=disk_full"), tracingDropped(m))
	if code := ap.terminate(); code != 0 {
		t.Fatalf("apmkit exited %d on SIGTERM after the recovery, want 0", code)
	}
	checkNoFault(t, ap)
}

// mountTmpfs mounts a tmpfs of size (mount's size= syntax) on a temp dir and unmounts it at
// cleanup, after the processes the test starts later are gone (cleanups run last-in first).
// Mounting needs root: elsewhere the test is skipped, except in CI, where it must run.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	cannot := func(why string) {
		t.Helper()
		if inCI {
			t.Fatalf("TestDiskFull needs a tmpfs of its own (%s); CI runs as root and must run it", why)
		}
		t.Skipf("TestDiskFull needs to mount a tmpfs (%s): run it as root (CI does)", why)
	}
	if os.Geteuid() != 0 {
		cannot("not root")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		cannot(fmt.Sprintf("mount -t tmpfs -o size=%s tmpfs %s: %v", size, dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Something still holds it (a child that outlived its cleanup): detach it, so the
			// mount does not outlive the test, and say so.
			t.Errorf("unmount %s: %v; detaching it", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillUp writes path until the file system has no byte left: 1 MiB every 50 ms, then
// smaller writes for the rest.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filler: %v", err)
				}
				break
			}
			if chunk == 1<<20 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	t.Logf("filled the disk: filler of %d bytes, %d bytes free", size(t, path), freeBytes(t, filepath.Dir(path)))
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// pingAnswer is what the test reads of /v1/ping.
type pingAnswer struct {
	Status     string   `json:"status"`
	Degraded   []string `json:"degraded"`
	CacheState string   `json:"cache_state"`
}

func (p *apmkitProc) ping() pingAnswer {
	p.t.Helper()
	b, err := p.get("/v1/ping")
	if err != nil {
		p.t.Fatalf("/v1/ping: %v\n%s", err, tail(p.logPath, 40))
	}
	var a pingAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		p.t.Fatalf("/v1/ping: %v: %s", err, b)
	}
	return a
}

// checkNoFault fails if apmkit's log shows a Go runtime crash.
func checkNoFault(t *testing.T, ap *apmkitProc) {
	t.Helper()
	log, err := os.ReadFile(ap.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, crash := range []string{"fatal error:", "SIGBUS", "\ngoroutine "} {
		if strings.Contains(string(log), crash) {
			t.Fatalf("apmkit's log shows a crash (%q):\n%s", crash, tail(ap.logPath, 60))
		}
	}
}

// startSinkOn is startSink listening on addr: the output's address that had nothing
// listening until now.
func startSinkOn(t *testing.T, addr string) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sink on %s (the output's address): %v", addr, err)
	}
	s := &sink{t: t, url: "http://" + ln.Addr().String(), entries: map[EntryID]int{}, lines: map[string]int64{}, requests: map[sinkMode]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/write/{category}", s.write)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { s.srv.Close() })
	return s
}
