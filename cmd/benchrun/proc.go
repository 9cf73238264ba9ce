package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture Go supports (the kernel scales it for user space whatever HZ is).
const userHZ = 100

// cpuSeconds is a process's user+system CPU time so far, from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads fields 14 (utime) and 15 (stime). The command name (field 2) is in
// parentheses and may hold spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return float64(ut+st) / userHZ, nil
}

// busyCPUSeconds is the machine's busy CPU time so far (every core, every process), from
// the first line of /proc/stat: all columns but idle and iowait. The report uses it to show
// how much CPU other processes took during a run, since they distort the figures.
func busyCPUSeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBusyCPU(b)
}

func parseBusyCPU(b []byte) (float64, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest columns are already in user
			busy += n
		}
	}
	return float64(busy) / userHZ, nil
}

// peakRSSMB is VmHWM (the resident set's high-water mark) from /proc/<pid>/status, in MiB.
func peakRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmHWM(b)
}

func parseVmHWM(b []byte) (float64, error) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("status: VmHWM %q", rest)
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return float64(kb) / 1024, err
		}
	}
	return 0, errors.New("status: no VmHWM")
}

// machine describes the host for the report: cores, CPU model, memory.
func machine() (cores int, model string, memGiB float64) {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(cpuinfo)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			cores++
		}
	}
	meminfo, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.Lines(string(meminfo)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				memGiB = kb / (1 << 20)
			}
		}
	}
	return cores, model, memGiB
}

// freePort returns a loopback port free a moment ago; the collector binds it right after.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListening waits until addr accepts connections, or the process exits, or timeout.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not listening on %s after %s", addr, timeout)
}

// server is a collector process under measurement.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{}
	stdout bytes.Buffer
}

// startServer starts a collector with its stderr in logPath.
func startServer(name string, args []string, env []string, logPath string) (*server, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	s := &server{cmd: exec.Command(name, args...), exited: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, log
	s.cmd.Env = append(os.Environ(), env...)
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		log.Close()
		close(s.exited)
	}()
	return s, nil
}

// stop sends SIGTERM (a graceful stop) and waits; SIGKILL after timeout.
func (s *server) stop(timeout time.Duration) error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("%s did not stop within %s", s.cmd.Path, timeout)
	}
	if !s.cmd.ProcessState.Success() {
		return fmt.Errorf("%s: %s", s.cmd.Path, s.cmd.ProcessState)
	}
	return nil
}

// rusageCPU is a finished child's user+system CPU seconds.
func rusageCPU(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}
