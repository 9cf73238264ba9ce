// Package config loads apmkit's configuration: the main file conf.d/apmkit.conf, input files
// conf.d/**/*.conf with [[inputs.NAME]] tables, and the DataKit-style environment overlay.
// Every mistake is an error that names where it is, the key, and what is allowed.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs"
	"github.com/apmkit/apmkit/internal/secret"
	apmio "github.com/apmkit/apmkit/io"
)

// MainFile is the main config file's name inside the conf dir.
const MainFile = "apmkit.conf"

// Main is apmkit.conf.
type Main struct {
	Hostname   string            `toml:"hostname" doc:"Host name written to points (tag host) and logs. Empty = the OS host name.\nENV_HOSTNAME overrides it."`
	DataDir    string            `toml:"data_dir" doc:"Where apmkit keeps its cache, disk spill and file output.\nThe --data-dir flag overrides it."`
	HTTPAPI    HTTPAPI           `toml:"http_api" doc:"The HTTP API: /v1/ping, /v1/stats, /metrics, and the explorer (the web page at /, its API under /api/v1/)."`
	Log        Log               `toml:"log"`
	GlobalTags map[string]string `toml:"global_tags" doc:"Tags added to every point of every input (a point's own tag of the same key wins).\nENV_GLOBAL_HOST_TAGS=\"k=v,k2=v2\" adds to them." example:"env = \"prod\"\nproject = \"shop\""`
	IO         apmio.Config      `toml:"io" doc:"The uploader: queues, batching and outputs."`
	Cache      cache.Config      `toml:"cache" doc:"Cache of agent info, metadata and pending span chunks: badger in DATA_DIR/cache, or Redis with redis_url."`
}

// HTTPAPI is the [http_api] table.
type HTTPAPI struct {
	Listen string `toml:"listen" doc:"host:port of the HTTP API. Empty disables it. ENV_HTTP_LISTEN overrides it."`
	Pprof  bool   `toml:"pprof" doc:"Serve Go's profiler under /debug/pprof/ on the API (for performance work; keep the API on loopback)."`
	// The explorer shows what the applications do (URLs, SQL, exceptions): when the API
	// listens beyond loopback, these keep it private. /v1/ping, /v1/stats and /metrics stay
	// open, for probes, Prometheus and apmkit monitor.
	Token    secret.Secret `toml:"token" doc:"Explorer (the page at / and /api/v1/): require this token, as Authorization: Bearer TOKEN or as the basic-auth password\n(any user name, so a browser can log in). Empty: no token. Set it, or username and password, when listen is not on loopback.\nENV_HTTP_TOKEN overrides it."`
	Username string        `toml:"username" doc:"Explorer: basic-auth user name (with password)."`
	Password secret.Secret `toml:"password" doc:"Explorer: basic-auth password (with username; masked wherever it is printed)."`
}

func (h *HTTPAPI) validateAuth() []error {
	var errs []error
	if (h.Username == "") != (h.Password.Reveal() == "") {
		errs = append(errs, errors.New("http_api: username and password: set both for basic auth, or neither"))
	}
	for _, kv := range [][2]string{{"token", h.Token.Reveal()}, {"password", h.Password.Reveal()}} {
		if p, ok := secret.Placeholder(kv[1]); ok {
			errs = append(errs, fmt.Errorf("http_api.%s: a placeholder (%s), not a secret", kv[0], p))
		}
	}
	return errs
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level" doc:"debug | info | warn | error. ENV_LOG_LEVEL overrides it."`
	Format string `toml:"format" doc:"text | json"`
}

// DefaultMain returns the embedded defaults: apmkit runs on them with no file at all.
func DefaultMain() Main {
	return Main{
		DataDir: "./data",
		HTTPAPI: HTTPAPI{Listen: "127.0.0.1:9529"},
		Log:     Log{Level: "info", Format: "text"},
		IO:      apmio.DefaultConfig(),
		Cache:   cache.DefaultConfig(),
	}
}

// Validate checks the main config.
func (m *Main) Validate() error {
	var errs []error
	if m.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if m.HTTPAPI.Listen != "" {
		if _, _, err := net.SplitHostPort(m.HTTPAPI.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http_api.listen: %q is not host:port (e.g. 127.0.0.1:9529)", m.HTTPAPI.Listen))
		}
	}
	errs = append(errs, m.HTTPAPI.validateAuth()...)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, m.Log.Level) {
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", m.Log.Level))
	}
	if !slices.Contains([]string{"text", "json"}, m.Log.Format) {
		errs = append(errs, fmt.Errorf("log.format: %q is not one of text, json", m.Log.Format))
	}
	for k, v := range m.GlobalTags {
		if k == "" || v == "" {
			errs = append(errs, fmt.Errorf("global_tags: %q = %q: keys and values must not be empty", k, v))
		}
	}
	if err := m.Cache.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := m.IO.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Instance is one configured input instance.
type Instance struct {
	Plugin string
	// Source says where it was configured, for errors and logs.
	Source string
	Config inputs.Config
}

// Config is the effective configuration.
type Config struct {
	Main     Main
	Inputs   []Instance
	MainFile string   // "" when apmkit runs on embedded defaults
	Files    []string // input files read
	Warnings []string // things worth a log line that are not errors

	envSources []map[string]string // per input: key path -> "VAR=value" set by the environment
}

// Options says where to load from.
type Options struct {
	ConfDir string
	// DataDir overrides data_dir when not empty (the --data-dir flag).
	DataDir string
	// Environ is the environment as KEY=VALUE lines (os.Environ() when nil).
	Environ []string
}

// Load reads the config files and the environment, and validates the result.
func Load(opts Options) (*Config, error) {
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	env := parseEnviron(opts.Environ)
	cfg := &Config{Main: DefaultMain()}
	if err := cfg.loadMain(opts.ConfDir); err != nil {
		return nil, err
	}
	envSet, err := applyMainEnv(&cfg.Main, env)
	if err != nil {
		return nil, err
	}
	if opts.DataDir != "" {
		cfg.Main.DataDir = opts.DataDir
		envSet["data_dir"] = "--data-dir " + opts.DataDir
	}
	if err := cfg.Main.Validate(); err != nil {
		return nil, attribute(err, envSet, orDefault(cfg.MainFile, "main config"))
	}
	if err := cfg.loadInputs(opts.ConfDir, env); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) loadMain(confDir string) error {
	path := filepath.Join(confDir, MainFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	c.MainFile = path
	md, err := toml.Decode(string(data), &c.Main)
	if err != nil {
		return decodeError(path, "", err)
	}
	if err := unknownKeys(md, nil, Main{}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := bareDurations(path, string(data), md, Main{}); err != nil {
		return err
	}
	return nil
}

// loadInputs reads conf.d/**/*.conf, ENV_DATAKIT_INPUTS, ENV_DEFAULT_ENABLED_INPUTS and
// the ENV_INPUT_* options, in that order.
func (c *Config) loadInputs(confDir string, env map[string]string) error {
	files, err := inputFiles(confDir)
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := c.addInputs(f, string(data)); err != nil {
			return err
		}
		c.Files = append(c.Files, f)
	}
	if err := c.addEnvInputs(env); err != nil {
		return err
	}
	c.addDefaultEnabled(env)
	for i := range c.Inputs {
		in := &c.Inputs[i]
		set, err := applyInputEnv(in, env)
		if err != nil {
			return err
		}
		c.envSources = append(c.envSources, set)
		if err := in.Config.Validate(); err != nil {
			return attribute(err, set, in.Source)
		}
	}
	if err := checkInputEnvNames(env); err != nil {
		return err
	}
	return errors.Join(c.checkAddresses(), c.checkAliases())
}

// inputFiles lists conf.d/**/*.conf except the main file, sorted, so the instance order
// is stable. Samples (*.conf.sample) are not read.
func inputFiles(confDir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(confDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if path == confDir && errors.Is(err, os.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".conf") || path == filepath.Join(confDir, MainFile) {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", confDir, err)
	}
	slices.Sort(files)
	return files, nil
}

// addInputs decodes the [[inputs.NAME]] tables of one TOML document.
func (c *Config) addInputs(source, doc string) error {
	var tables struct {
		Inputs map[string][]toml.Primitive `toml:"inputs"`
	}
	md, err := toml.Decode(doc, &tables)
	if err != nil {
		return decodeError(source, "", err)
	}
	if err := bareDurations(source, doc, md, tables); err != nil {
		return err
	}
	for _, name := range sortedKeys(tables.Inputs) {
		plugin, ok := inputs.Get(name)
		if !ok {
			return fmt.Errorf("%s: [[inputs.%s]]: unknown input (known: %s)", source, name, strings.Join(inputs.Names(), ", "))
		}
		for i, prim := range tables.Inputs[name] {
			cfg := plugin.NewConfig()
			where := fmt.Sprintf("%s: [[inputs.%s]] #%d", source, name, i+1)
			if err := md.PrimitiveDecode(prim, cfg); err != nil {
				return decodeError(source, fmt.Sprintf("[[inputs.%s]] #%d", name, i+1), err)
			}
			c.Inputs = append(c.Inputs, Instance{Plugin: name, Source: where, Config: cfg})
		}
	}
	if err := unknownKeys(md, []string{"inputs"}, tables); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	return nil
}

// checkAddresses refuses two input instances listening on the same address (same port,
// and the same host or a wildcard host): they would pass validation and then fail at start
// with "address already in use". Port 0 (any free port) never conflicts.
func (c *Config) checkAddresses() error {
	type use struct{ where, host, port, addr string }
	var uses []use
	var errs []error
	for i, in := range c.Inputs {
		l, ok := in.Config.(inputs.Listener)
		if !ok {
			continue
		}
		addrs := l.ListenAddresses()
		for _, key := range sortedKeys(addrs) {
			host, port, err := net.SplitHostPort(addrs[key])
			if err != nil || port == "0" {
				continue
			}
			where := fmt.Sprintf("%s %s", in.Source, key)
			if src, ok := c.envSources[i][key]; ok {
				where += " (" + src + ")"
			}
			u := use{where: where, host: host, port: port, addr: addrs[key]}
			for _, o := range uses {
				if o.port == u.port && (o.host == u.host || wildcardHost(o.host) || wildcardHost(u.host)) {
					errs = append(errs, fmt.Errorf("two inputs listen on the same address: %s = %q and %s = %q; give each instance its own port", o.where, o.addr, u.where, u.addr))
				}
			}
			uses = append(uses, u)
		}
	}
	return errors.Join(errs...)
}

// checkAliases refuses two instances of one plugin with the same alias (by default their
// address): they would share, and clobber, each other's cache state.
func (c *Config) checkAliases() error {
	seen := map[[2]string]string{} // plugin, alias -> the first instance's source
	var errs []error
	for _, in := range c.Inputs {
		a, ok := in.Config.(inputs.Aliaser)
		if !ok {
			continue
		}
		key := [2]string{in.Plugin, a.InstanceAlias()}
		if first, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("two [[inputs.%s]] instances have the alias %q (%s and %s): their cache state would mix; give each its own alias", in.Plugin, key[1], first, in.Source))
			continue
		}
		seen[key] = in.Source
	}
	return errors.Join(errs...)
}

func wildcardHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
