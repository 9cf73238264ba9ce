// Package proctest is the process plumbing of the test helpers that run a real server
// (influxtest, redistest, jaegertest): a free loopback port, the server's program (skipped
// locally when it is missing, a failure in CI), the process with its output in a file,
// waiting until it is ready or has exited, killing it, and the end of its log when the test
// failed.
//
// The output goes to files, not pipes: no copying goroutine is left for goleak to find.
package proctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// FreeAddr returns a loopback address nothing listens on (for now).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Missing ends a test whose server program is not there. In CI (CI=true), where a missing
// server must fail the build rather than silently skip, it fails the test with fatal;
// elsewhere it skips it with skip.
func Missing(t testing.TB, fatal, skip string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(fatal)
	}
	t.Skip(skip)
}

// LookPath returns the path of the program name on $PATH. Without it the test ends as
// Missing says, with fatal or skip.
func LookPath(t testing.TB, name, fatal, skip string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, fatal, skip)
	}
	return path
}

// Process is a running server program.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *os.File      // nil: output to /dev/null
	done chan struct{} // closed when the process has exited; err is then set
	err  error         // what Wait returned
}

// Start starts the program path with args; name is what messages call it. With out set, the
// program's stdout and stderr go to the file out, created; with out "" they go to /dev/null,
// for a program that writes a log file of its own. A program that does not start fails the
// test. The process runs until Kill: Run starts one killed when the test ends.
func Start(t testing.TB, name, out, path string, args ...string) *Process {
	t.Helper()
	p := &Process{name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		p.out = f
		p.cmd.Stdout, p.cmd.Stderr = f, f
	}
	if err := p.cmd.Start(); err != nil {
		if p.out != nil {
			_ = p.out.Close()
		}
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// Run starts the program as Start does, its stdout and stderr to the file out, and kills it
// when the test ends; if the test failed, the end of out is logged.
func Run(t testing.TB, name, out, path string, args ...string) *Process {
	t.Helper()
	p := Start(t, name, out, path, args...)
	t.Cleanup(func() {
		t.Helper()
		p.Kill()
		LogIfFailed(t, name, out)
	})
	return p
}

// Kill kills the process (SIGKILL, as a crash or an OOM kill) and waits until it is gone. A
// second Kill, or one of a process that has exited, only waits.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	if p.out != nil {
		_ = p.out.Close()
	}
}

// Signal sends sig to the process (SIGSTOP and SIGCONT freeze and thaw it).
func (p *Process) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// WaitReady calls ready every 20 ms until it returns nil. It returns an error when the
// process exits first, or when ready still fails after timeout (with ready's last error).
func (p *Process) WaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited early: %v", p.err)
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tailBytes is how much of the end of a log Tail returns.
const tailBytes = 8 << 10

// Tail returns the last 8 KiB of the file path ("" when it cannot be read).
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	return string(b[max(0, len(b)-tailBytes):])
}

// LogIfFailed logs the end of the log file path as "name log:" when the test has failed;
// call it at cleanup, once the process is gone.
func LogIfFailed(t testing.TB, name, path string) {
	t.Helper()
	if t.Failed() {
		t.Logf("%s log:\n%s", name, Tail(path))
	}
}
