// Command apmkit is a DataKit-style agent that takes Pinpoint APM data into an
// observability stack. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs"
	_ "github.com/apmkit/apmkit/inputs/all" // registers every input
	"github.com/apmkit/apmkit/internal/agent"
	"github.com/apmkit/apmkit/internal/monitor"
	"github.com/apmkit/apmkit/internal/version"
)

const usage = `apmkit: take Pinpoint APM data into InfluxDB, DataWay or files.

Usage:
  apmkit [run] [--conf-dir DIR] [--data-dir DIR]   run the agent (default)
  apmkit config [--conf-dir DIR] [--data-dir DIR]  print the effective config (secrets masked)
  apmkit sample [INPUT...]                         print sample configs
  apmkit monitor [--addr HOST:PORT] [--once]       live view of a running apmkit (its /v1/stats):
                                                   agents, rates, queues, outputs; --once prints
                                                   one snapshot with totals instead of rates
  apmkit version                                   print the version (also --version)
  apmkit help                                      this text (also -h, --help)

"apmkit COMMAND -h" shows the flags of COMMAND.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code: 0 for success and for help
// asked for, 1 for errors, 2 for a command line apmkit does not understand.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			cmd, args = "help", args[1:]
		case "-version", "--version":
			cmd, args = "version", args[1:]
		}
	}
	var err error
	switch cmd {
	case "run":
		err = runAgent(args, stdout, stderr)
	case "config":
		err = printConfig(args, stdout)
	case "sample":
		err = printSample(args, stdout)
	case "monitor":
		err = runMonitor(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "apmkit", version.Version)
	case "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "apmkit: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "apmkit:", err)
		return 2
	}
	fmt.Fprintln(stderr, "apmkit:", err)
	return 1
}

// errUsage marks a command line the command does not understand (exit 2, as flag errors).
var errUsage = errors.New("usage")

// flagSet is a command's flags: -h prints them to the help writer (stdout); a bad flag is
// an error that points to -h (the flag package's own printing is off).
type flagSet struct {
	*flag.FlagSet
	synopsis string
	help     io.Writer
}

func newFlagSet(name, synopsis string, help io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, help: help}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses the command's flags: -h prints the usage and returns flag.ErrHelp, a bad
// flag is a usage error.
func (fs *flagSet) parse(args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(fs.help, "Usage: apmkit %s\n", fs.synopsis)
		fs.SetOutput(fs.help)
		fs.PrintDefaults()
		return err
	}
	return fmt.Errorf("%s: %w: %v (see apmkit %s -h)", fs.Name(), errUsage, err, fs.Name())
}

// loadFlags parses --conf-dir and --data-dir and loads the config. It also returns the
// loader, for reloads (SIGHUP). A --conf-dir given explicitly must exist: a typo there would
// otherwise run apmkit on its embedded defaults without a word.
func loadFlags(name string, args []string, out io.Writer) (*config.Config, func() (*config.Config, error), error) {
	fs := newFlagSet(name, name+" [--conf-dir DIR] [--data-dir DIR]", out)
	confDir := fs.String("conf-dir", "./conf.d", "folder with apmkit.conf and the inputs' *.conf files")
	dataDir := fs.String("data-dir", "", "data folder (cache, spill, file output); overrides data_dir (default ./data)")
	if err := fs.parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: %w: unexpected arguments %q", name, errUsage, fs.Args())
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "conf-dir" })
	load := func() (*config.Config, error) {
		if explicit {
			st, err := os.Stat(*confDir)
			switch {
			case errors.Is(err, os.ErrNotExist):
				return nil, fmt.Errorf("--conf-dir %s: no such folder (leave --conf-dir out to run on the embedded defaults)", *confDir)
			case err != nil:
				return nil, fmt.Errorf("--conf-dir %s: %w", *confDir, err)
			case !st.IsDir():
				return nil, fmt.Errorf("--conf-dir %s: not a folder", *confDir)
			}
		}
		return config.Load(config.Options{ConfDir: *confDir, DataDir: *dataDir})
	}
	cfg, err := load()
	return cfg, load, err
}

func runAgent(args []string, stdout, stderr io.Writer) error {
	cfg, load, err := loadFlags("run", args, stdout)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Main.Log, stderr)
	setMemoryLimit(log)
	ctx, stopSignals := signalContext(log)
	defer stopSignals()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		signal.Stop(hup) // no signal is sent on hup once Stop returns
		close(hup)
	}()
	reloads := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reloads <- struct{}{}:
			default: // a reload is already waiting
			}
		}
	}()
	return serve(ctx, reloads, load, cfg, stderr)
}

// serve runs agents until ctx ends: each reload loads the config again and, when it is
// valid, stops the running agent gracefully (queues flushed to the outputs or the disk
// spill, pending chunks and held spans kept in the cache, ports released) and starts a new
// one from the new config in the same process. An invalid config is logged as ERROR and
// the running agent goes on. When the new config fails to start, the previous one is
// started again.
func serve(ctx context.Context, reloads <-chan struct{}, load func() (*config.Config, error), cfg *config.Config, logOut io.Writer) error {
	var prev *config.Config
	for {
		log := newLogger(cfg.Main.Log, logOut)
		for _, w := range cfg.Warnings {
			log.Warn(w)
		}
		log.Info("starting apmkit", "version", version.Version, "main_config", orEmbedded(cfg.MainFile), "input_files", cfg.Files)
		a, err := agent.New(cfg, log)
		if err != nil {
			return err
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()
		next, err := waitReload(ctx, reloads, load, done, log)
		cancel()
		if next == nil {
			if err != nil && prev != nil && ctx.Err() == nil {
				log.Error("reload: the new configuration failed to start; starting the previous one again", "err", err)
				cfg, prev = prev, nil
				continue
			}
			return err
		}
		if err := <-done; err != nil {
			log.Error("reload: stopping the running agent", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Info("reload: the running agent stopped; starting it with the new configuration")
		prev, cfg = cfg, next
	}
}

// waitReload waits for the agent to end (its error, next nil) or for a reload with a valid
// config (next; the caller stops the agent). Invalid configs are logged and ignored.
func waitReload(ctx context.Context, reloads <-chan struct{}, load func() (*config.Config, error), done <-chan error, log *slog.Logger) (next *config.Config, err error) {
	for {
		select {
		case err := <-done:
			return nil, err
		case <-reloads:
			if ctx.Err() != nil {
				continue // stopping anyway
			}
			log.Info("reload: SIGHUP received, loading the configuration again")
			cfg, err := load()
			if err != nil {
				log.Error("reload: invalid configuration, keeping the running one", "err", err)
				continue
			}
			return cfg, nil
		}
	}
}

// memoryLimitRatio is the share of the container's memory limit that becomes the Go
// runtime's soft limit: the rest is headroom for what the runtime does not count (stacks
// of many gRPC connections, mmapped cache files).
const memoryLimitRatio = 0.85

// setMemoryLimit gives the Go runtime a soft memory limit derived from the cgroup's (the
// container's) memory limit, so the garbage collector works harder before the kernel would
// OOM-kill apmkit. GOMEMLIMIT, when set, wins (the library leaves it alone), and
// AUTOMEMLIMIT=off turns this off. Without a cgroup limit nothing changes.
func setMemoryLimit(log *slog.Logger) {
	limit, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case err != nil && !errors.Is(err, memlimit.ErrNoLimit):
		log.Warn("memory limit: cgroup not readable, the Go runtime keeps its default", "err", err)
	case limit > 0:
		log.Info("memory limit: Go soft limit set from the container's limit", "soft_limit_mb", limit>>20, "ratio", memoryLimitRatio)
	}
}

// signalContext ends at the first SIGINT/SIGTERM (graceful stop); a second one exits at
// once. stop releases the signals.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	quit := make(chan struct{})
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal received, stopping gracefully (send it again to exit at once)", "signal", s.String())
			cancel()
		case <-quit:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: exiting without flushing", "signal", s.String())
			os.Exit(1)
		case <-quit:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(quit)
		cancel()
	}
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func orEmbedded(path string) string {
	if path == "" {
		return "(none: embedded defaults)"
	}
	return path
}

func printConfig(args []string, stdout io.Writer) error {
	cfg, _, err := loadFlags("config", args, stdout)
	if err != nil {
		return err
	}
	text, err := cfg.Effective()
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, text)
	return err
}

func printSample(args []string, stdout io.Writer) error {
	fs := newFlagSet("sample", "sample [INPUT...]   (inputs: "+strings.Join(inputs.Names(), ", ")+"; none: every sample)", stdout)
	if err := fs.parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprintf(stdout, "# ---- %s ----\n%s", config.MainFile+".sample", config.MainSample())
		args = inputs.Names()
	}
	for _, name := range args {
		p, ok := inputs.Get(name)
		if !ok {
			return fmt.Errorf("sample: unknown input %q (known: %s)", name, strings.Join(inputs.Names(), ", "))
		}
		fmt.Fprintf(stdout, "\n# ---- %s ----\n%s", name+".conf.sample", config.InputSample(p))
	}
	return nil
}

// runMonitor shows a running apmkit's /v1/stats: live until Ctrl-C, or once for scripts.
func runMonitor(args []string, stdout io.Writer) error {
	fs := newFlagSet("monitor", "monitor [--addr HOST:PORT] [--once] [--interval D]", stdout)
	addr := fs.String("addr", monitor.DefaultAddr, "apmkit's HTTP API: host:port ([http_api] listen) or a base URL")
	once := fs.Bool("once", false, "print one snapshot (totals since start, no rates) and exit; exit 1 if apmkit does not answer")
	interval := fs.Duration("interval", time.Second, "refresh interval of the live view; rates are per second over it")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("monitor: %w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *interval <= 0 {
		return fmt.Errorf("monitor: --interval %s must be > 0", *interval)
	}
	// Ctrl-C ends the live view normally (exit 0); it is how one leaves it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return monitor.Run(ctx, monitor.Options{Addr: *addr, Once: *once, Interval: *interval, Out: stdout})
}
