// Package redistest runs a real redis-server (Debian's `redis-server` package) for tests: on
// a free loopback port, with its files in the test's temp dir, without persistence unless
// asked, killed when the test ends. Stop and Restart take Redis away and bring it back on the
// same address, as an outage does; Freeze and Thaw make it hang and resume. Tests of what lands in Redis read it
// back with Client instead of trusting what was sent.
package redistest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Options change how redis-server runs.
type Options struct {
	// Persist turns the append-only file on, fsynced at every write, so what Redis took
	// before Stop (a kill -9) is there again after Restart. Without it Redis restarts empty.
	Persist bool
	// Password sets requirepass: clients must authenticate.
	Password string
	// Cluster runs Redis as a one-node cluster owning every hash slot. It refuses commands
	// and scripts that touch keys of several slots (CROSSSLOT), as a real cluster does.
	Cluster bool
	// TLS makes Redis speak TLS only, with a self-signed certificate for 127.0.0.1.
	TLS bool
}

// Server is a running redis-server.
type Server struct {
	// Addr is 127.0.0.1:port; it stays the same across Stop and Restart.
	Addr string
	// Password is Options.Password.
	Password string

	opts Options
	bin  string
	dir  string

	mu    sync.Mutex
	proc  *process // nil while stopped
	slots bool     // cluster mode: the node owns the slots, so it must report the cluster ok
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan error
}

// binary returns the redis-server path. Without it the test is skipped, except in CI
// (CI=true), where a missing server must fail the build rather than silently skip.
func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found: install the Debian package `redis-server` (apt-get install redis-server)")
		}
		t.Skip("redis-server not found (install the Debian package `redis-server`); skipping a test against a real Redis")
	}
	return bin
}

// Start runs redis-server for the test; it is killed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{Addr: FreeAddr(t), Password: opts.Password, opts: opts, bin: binary(t), dir: t.TempDir()}
	if opts.TLS {
		writeCert(t, s.dir)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("redis-server log:\n%s", s.logTail())
		}
	})
	s.start(t)
	if opts.Cluster {
		s.assignSlots(t)
	}
	return s
}

// FreeAddr returns a loopback address nothing listens on (for now): Start's, or a test's
// address of a Redis that is not there.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// args is the command line: loopback only, files in dir, persistence and cluster mode as
// asked. The same every run, so a Restart finds the files of the run before.
func (s *Server) args() []string {
	_, port, _ := net.SplitHostPort(s.Addr)
	portArgs := []string{"--port", port}
	if s.opts.TLS {
		portArgs = []string{"--port", "0", "--tls-port", port, "--tls-auth-clients", "no",
			"--tls-cert-file", filepath.Join(s.dir, "cert.pem"), "--tls-key-file", filepath.Join(s.dir, "key.pem"),
			"--tls-ca-cert-file", filepath.Join(s.dir, "cert.pem")}
	}
	args := append(portArgs,
		"--bind", "127.0.0.1", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"), "--daemonize", "no",
		"--save", "", "--appendonly", "no",
	)
	if s.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.opts.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"))
	}
	return args
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		t.Fatal("redistest: redis-server is already running")
	}
	// Stdout and stderr stay nil (/dev/null): Redis logs to its file, and no copying
	// goroutine is left for goleak to find.
	cmd := exec.Command(s.bin, s.args()...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	p := &process{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	s.proc = p
	if err := waitReady(s.Addr, s.Password, s.opts.TLS, s.slots, p.exited); err != nil {
		t.Fatalf("redis-server at %s: %v\nlog:\n%s", s.Addr, err, s.logTail())
	}
}

// Stop kills redis-server (SIGKILL, as a crash or an OOM kill) and waits until it is gone.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if !s.kill() {
		t.Fatal("redistest: Stop of a stopped redis-server")
	}
}

// Restart starts redis-server again on the same address with the same files.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.start(t)
}

func (s *Server) kill() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.exited
	s.proc = nil
	return true
}

// Freeze stops redis-server (SIGSTOP) without closing anything: connections stay open and
// new ones are still accepted by the kernel, but no command is answered, as with a Redis that
// hangs or is too slow to matter. Thaw resumes it.
func (s *Server) Freeze(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Thaw resumes a frozen redis-server (SIGCONT).
func (s *Server) Thaw(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("redistest: %v to a stopped redis-server", sig)
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Client returns a client of the server for the test's own checks, closed when the test
// ends. In cluster mode it talks to the one node, which owns every key.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	o := &redis.Options{
		Addr: s.Addr, Password: s.Password, MaxRetries: -1, DialerRetries: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if s.opts.TLS {
		o.TLSConfig = &tls.Config{InsecureSkipVerify: true} // the test's own self-signed certificate
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// URL is the server's redis:// URL, with the password if it has one; with TLS it is
// rediss:// and skips verifying the self-signed certificate.
func (s *Server) URL() string {
	u := "redis://"
	if s.opts.TLS {
		u = "rediss://"
	}
	if s.Password != "" {
		u += ":" + s.Password + "@"
	}
	u += s.Addr
	if s.opts.TLS {
		u += "?skip_verify=true"
	}
	return u
}

// waitReady waits until the server answers PING (and, in cluster mode, reports the
// cluster ok), failing if it exits or takes more than 30 seconds.
func waitReady(addr, password string, useTLS, cluster bool, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited early: %v", err)
		default:
		}
		err := ping(addr, password, useTLS, cluster)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping speaks RESP over a plain connection: a go-redis client per attempt would log its
// own dial errors while the server starts.
func ping(addr, password string, useTLS, cluster bool) error {
	var conn net.Conn
	var err error
	if useTLS {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := command(conn, r, "AUTH", password); err != nil {
			return err
		}
	}
	if _, err := command(conn, r, "PING"); err != nil {
		return err
	}
	if !cluster {
		return nil
	}
	info, err := command(conn, r, "CLUSTER", "INFO")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("cluster not ok yet")
	}
	return nil
}

// command sends one command and reads a simple, error or bulk string reply.
func command(conn net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("%s: %s", args[0], line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%s: unexpected reply %q", args[0], line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return strings.TrimPrefix(line, "+"), nil
}

// assignSlots gives the one node every hash slot and waits for the cluster to be ok. A
// restart reads the assignment back from nodes.conf.
func (s *Server) assignSlots(t testing.TB) {
	t.Helper()
	c := s.Client(t)
	if err := c.Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	s.mu.Lock()
	exited := s.proc.exited
	s.slots = true
	s.mu.Unlock()
	if err := waitReady(s.Addr, s.Password, s.opts.TLS, true, exited); err != nil {
		t.Fatalf("redis cluster at %s: %v", s.Addr, err)
	}
}

// logTail is the end of redis-server's log.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// Sentinel is a running Redis Sentinel watching one Server as its master.
type Sentinel struct {
	// Addr is 127.0.0.1:port.
	Addr string
}

// StartSentinel runs a Sentinel (redis-server --sentinel) that monitors master under
// masterName, and waits until it answers with the master's address. It is killed when the
// test ends.
func StartSentinel(t testing.TB, master *Server, masterName string) *Sentinel {
	t.Helper()
	bin, dir, addr := binary(t), t.TempDir(), FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	conf := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 60000\n",
		port, dir, filepath.Join(dir, "sentinel.log"), masterName, mhost, mport, masterName)
	if master.Password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", masterName, master.Password)
	}
	path := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites its config: a file of its own
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, path, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if err := waitReady(addr, "", false, false, exited); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		t.Fatalf("redis sentinel at %s: %v\nlog:\n%s", addr, err, log)
	}
	return &Sentinel{Addr: addr}
}

// writeCert writes a self-signed certificate for 127.0.0.1 (cert.pem, also the CA) and its
// key (key.pem) into dir.
func writeCert(t testing.TB, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "redistest"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
