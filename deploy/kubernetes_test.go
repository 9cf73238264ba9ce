package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/apmkit/apmkit/config"
	"github.com/apmkit/apmkit/inputs"
	_ "github.com/apmkit/apmkit/inputs/all"
	"github.com/apmkit/apmkit/inputs/pinpoint"
)

const manifestDir = "kubernetes"

// variants are the folders of complete manifest sets: the default one and the scale-out
// one (replicas sharing a Redis).
var variants = []string{manifestDir, filepath.Join(manifestDir, "scale-out")}

// The Kubernetes objects, as far as these checks read them. Fields the checks do not use
// are ignored; a misspelt field the checks do use shows up as missing.
type object struct {
	file string
	doc  int

	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`       // ConfigMap; Secret (base64)
	StringData map[string]string `yaml:"stringData"` // Secret
	Resources  []string          `yaml:"resources"`  // Kustomization
	Spec       yaml.Node         `yaml:"spec"`
}

func (o *object) String() string {
	return fmt.Sprintf("%s (%s %s)", o.file, o.Kind, o.Metadata.Name)
}

type workloadSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	Containers      []container `yaml:"containers"`
	Volumes         []volume    `yaml:"volumes"`
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
}

type container struct {
	Name         string          `yaml:"name"`
	Image        string          `yaml:"image"`
	Command      []string        `yaml:"command"`
	Args         []string        `yaml:"args"`
	Env          []envVar        `yaml:"env"`
	EnvFrom      []yaml.Node     `yaml:"envFrom"`
	Ports        []containerPort `yaml:"ports"`
	VolumeMounts []volumeMount   `yaml:"volumeMounts"`
	Resources    struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	StartupProbe    *probe `yaml:"startupProbe"`
	SecurityContext struct {
		RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		FieldRef        *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	HostPort      int    `yaml:"hostPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	EmptyDir *yaml.Node `yaml:"emptyDir"`
	HostPath *yaml.Node `yaml:"hostPath"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
}

type serviceSpec struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string      `yaml:"name"`
		Port       int         `yaml:"port"`
		TargetPort intOrString `yaml:"targetPort"`
	} `yaml:"ports"`
}

// intOrString is a port given by number or by name.
type intOrString struct{ s string }

func (p *intOrString) UnmarshalYAML(n *yaml.Node) error {
	p.s = n.Value
	return nil
}

// loadManifests decodes every document of every *.yaml file.
func loadManifests(files map[string]string) ([]*object, error) {
	var objs []*object
	names := mapsKeys(files)
	slices.Sort(names)
	for _, name := range names {
		dec := yaml.NewDecoder(strings.NewReader(files[name]))
		for doc := 1; ; doc++ {
			o := &object{file: name, doc: doc}
			err := dec.Decode(o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s document %d: %w", name, doc, err)
			}
			if o.Kind == "" {
				continue // an empty document
			}
			objs = append(objs, o)
		}
	}
	return objs, nil
}

func mapsKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func readManifests(t *testing.T) map[string]string { return readManifestsIn(t, manifestDir) }

// readManifestsIn reads the *.yaml files of one variant.
func readManifestsIn(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	files := map[string]string{}
	for _, p := range paths {
		files[filepath.Base(p)] = readFile(t, p)
	}
	return files
}

// mainEnv are the variables apmkit itself reads (config/env.go). EnvInputPrefix is a prefix:
// its variables are listed per input by config.EnvOptions.
var mainEnv = []string{
	config.EnvDefaultEnabledInputs, config.EnvDatakitInputs, config.EnvApmkitInputs, config.EnvDataway,
	config.EnvGlobalHostTags, config.EnvHTTPListen, config.EnvLogLevel, config.EnvHostname,
	config.EnvCacheRedisURL, config.EnvIOExplorer,
}

// runtimeEnv are read by the Go runtime in apmkit's process, not by its config.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC"}

// knownEnv is every variable a manifest may set.
func knownEnv() []string {
	known := slices.Concat(mainEnv, runtimeEnv)
	for _, name := range inputs.Names() {
		p, _ := inputs.Get(name)
		known = append(known, config.EnvOptions(p)...)
	}
	return known
}

// podEnv resolves a container's environment as the kubelet would, on top of the image's.
// Optional references to missing keys are left out, as Kubernetes does.
func podEnv(objs []*object, ns string, c *container, img image) (map[string]string, []error) {
	var errs []error
	env := map[string]string{}
	for k, v := range img.env {
		env[k] = v
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil:
			ref, kind := e.ValueFrom.ConfigMapKeyRef, "ConfigMap"
			if ref == nil {
				ref, kind = e.ValueFrom.SecretKeyRef, "Secret"
			}
			v, ok, err := lookupKey(objs, kind, ns, ref.Name, ref.Key)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("env %s: %w", e.Name, err))
			case ok:
				env[e.Name] = v
			case !ref.Optional:
				errs = append(errs, fmt.Errorf("env %s: %s %s/%s has no key %q in these manifests and the reference is not optional", e.Name, kind, ns, ref.Name, ref.Key))
			}
		case e.ValueFrom.FieldRef != nil:
			// The downward API's value is only known in the cluster; any name will do.
			env[e.Name] = "from-" + strings.ReplaceAll(e.ValueFrom.FieldRef.FieldPath, ".", "-")
		default:
			errs = append(errs, fmt.Errorf("env %s: a valueFrom this test cannot resolve", e.Name))
		}
	}
	return env, errs
}

func lookupKey(objs []*object, kind, ns, name, key string) (string, bool, error) {
	for _, o := range objs {
		if o.Kind != kind || o.Metadata.Name != name || o.Metadata.Namespace != ns {
			continue
		}
		if v, ok := o.StringData[key]; ok {
			return v, true, nil
		}
		v, ok := o.Data[key]
		if ok && kind == "Secret" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return "", false, fmt.Errorf("%s: data.%s is not base64: %w", o, key, err)
			}
			return string(b), true, nil
		}
		return v, ok, nil
	}
	return "", false, nil
}

// listener is a port apmkit listens on with the effective config, and what it is for.
type listener struct {
	role string // agent, stat, span (the Pinpoint addresses) or http-api
	host string
}

// defaultRolePorts are the well-known ports: a Service port with one of these numbers must
// reach the listener of that role, so agents with default collector ports land right.
var defaultRolePorts = map[int]string{9991: "agent", 9992: "stat", 9993: "span", 9529: "http-api"}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// effectiveConfig writes the config files the pod would see into a temp conf dir (the
// mounted ConfigMap keys under the image's --conf-dir) and runs apmkit's own loader on
// them with the pod's environment.
func effectiveConfig(t *testing.T, objs []*object, ns string, pod *podSpec, c *container, env map[string]string, confDir, dataDir string) (*config.Config, []error) {
	var errs []error
	tmp := t.TempDir()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(confDir, m.MountPath)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // not under conf.d
		}
		vol := findVolume(pod, m.Name)
		if vol == nil {
			errs = append(errs, fmt.Errorf("volumeMount %s: no volume of that name", m.Name))
			continue
		}
		if vol.ConfigMap == nil {
			continue
		}
		files := map[string]string{} // path in the volume -> key
		if len(vol.ConfigMap.Items) > 0 {
			for _, it := range vol.ConfigMap.Items {
				files[it.Path] = it.Key
			}
		} else {
			for _, o := range objs {
				if o.Kind == "ConfigMap" && o.Metadata.Name == vol.ConfigMap.Name && o.Metadata.Namespace == ns {
					for k := range o.Data {
						files[k] = k
					}
				}
			}
		}
		for p, key := range files {
			target := filepath.Join(tmp, rel, p)
			if m.SubPath != "" {
				if p != m.SubPath {
					continue
				}
				target = filepath.Join(tmp, rel)
			}
			v, ok, err := lookupKey(objs, "ConfigMap", ns, vol.ConfigMap.Name, key)
			if err != nil || !ok {
				errs = append(errs, fmt.Errorf("volume %s: ConfigMap %s has no key %q", vol.Name, vol.ConfigMap.Name, key))
				continue
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	cfg, err := config.Load(config.Options{ConfDir: tmp, DataDir: dataDir, Environ: environ})
	if err != nil {
		errs = append(errs, fmt.Errorf("apmkit refuses this configuration: %w", err))
	}
	return cfg, errs
}

func findVolume(pod *podSpec, name string) *volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// listeners lists what apmkit listens on with cfg, by port.
func listeners(cfg *config.Config) (map[int]listener, []error) {
	var errs []error
	out := map[int]listener{}
	add := func(role, addr string) {
		if addr == "" {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			errs = append(errs, fmt.Errorf("%s address %q is not host:port", role, addr))
			return
		}
		if isLoopback(addr) {
			errs = append(errs, fmt.Errorf("apmkit's %s listens on %s: loopback only, unreachable from other pods and from kubelet's probes (listen on 0.0.0.0)", role, addr))
		}
		if other, dup := out[n]; dup {
			errs = append(errs, fmt.Errorf("port %d is both %s and %s", n, other.role, role))
		}
		out[n] = listener{role: role, host: host}
	}
	add("http-api", cfg.Main.HTTPAPI.Listen)
	for _, in := range cfg.Inputs {
		pc, ok := in.Config.(*pinpoint.Config)
		if !ok {
			continue
		}
		add("agent", pc.Address)
		add("stat", pc.StatAddress)
		add("span", pc.SpanAddress)
	}
	return out, errs
}

// containerPortNumber resolves a probe's or Service's target port, by name or number.
func containerPortNumber(c *container, p intOrString) (int, bool) {
	if n, err := strconv.Atoi(p.s); err == nil {
		return n, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.s {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// workload is a checked pod template: its apmkit container and what that apmkit listens on.
type workload struct {
	obj       *object
	labels    map[string]string
	container *container
	listen    map[int]listener
}

// checkWorkload checks one Deployment/DaemonSet/StatefulSet against apmkit, given the image.
func checkWorkload(t *testing.T, objs []*object, o *object, img image) (*workload, []error) {
	var spec workloadSpec
	if err := o.Spec.Decode(&spec); err != nil {
		return nil, []error{err}
	}
	pod := &spec.Template.Spec
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			fail("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	var c *container
	for i := range pod.Containers {
		if strings.Contains(pod.Containers[i].Image, "apmkit") {
			c = &pod.Containers[i]
		}
	}
	if c == nil {
		return nil, []error{errors.New("no apmkit container")}
	}
	if len(c.EnvFrom) > 0 {
		fail("envFrom: list each variable in env instead, so this test can check its name")
	}
	known := knownEnv()
	for _, e := range c.Env {
		if !slices.Contains(known, e.Name) {
			fail("env %s: apmkit does not read it (known: %s)", e.Name, strings.Join(known, ", "))
		}
	}
	args := slices.Concat(c.Command, c.Args)
	if len(c.Command) == 0 {
		args = slices.Concat(img.entrypoint, c.Args)
		if len(c.Args) > 0 {
			args = slices.Concat(img.entrypoint[:1], c.Args)
		}
	}
	confDir, dataDir := flagValue(args, "--conf-dir"), flagValue(args, "--data-dir")
	if confDir == "" || dataDir == "" {
		fail("the command %q sets no --conf-dir or --data-dir", args)
		return nil, errs
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m volumeMount) bool {
		v := findVolume(pod, m.Name)
		return path.Clean(m.MountPath) == path.Clean(dataDir) && v != nil && (v.PersistentVolumeClaim != nil || v.EmptyDir != nil || v.HostPath != nil)
	}) {
		fail("no volume is mounted at the data dir %s: the cache, metadata and spill would be on the (read-only) root filesystem", dataDir)
	}

	env, envErrs := podEnv(objs, o.Metadata.Namespace, c, img)
	errs = append(errs, envErrs...)
	cfg, cfgErrs := effectiveConfig(t, objs, o.Metadata.Namespace, pod, c, env, confDir, dataDir)
	errs = append(errs, cfgErrs...)
	if cfg == nil {
		return nil, errs
	}
	// Optional references may be absent in a real cluster: apmkit must start without them
	// too and listen on the same ports.
	var required []envVar
	for _, e := range c.Env {
		if e.ValueFrom == nil || (e.ValueFrom.ConfigMapKeyRef == nil || !e.ValueFrom.ConfigMapKeyRef.Optional) && (e.ValueFrom.SecretKeyRef == nil || !e.ValueFrom.SecretKeyRef.Optional) {
			required = append(required, e)
		}
	}
	bare := *c
	bare.Env = required
	bareEnv, _ := podEnv(objs, o.Metadata.Namespace, &bare, img)
	bareCfg, bareErrs := effectiveConfig(t, objs, o.Metadata.Namespace, pod, c, bareEnv, confDir, dataDir)
	for _, err := range bareErrs {
		fail("without the optional ConfigMap/Secret keys: %v", err)
	}

	listen, lerrs := listeners(cfg)
	errs = append(errs, lerrs...)
	if bareCfg != nil {
		bareListen, _ := listeners(bareCfg)
		if fmt.Sprint(bareListen) != fmt.Sprint(listen) {
			fail("without the optional keys apmkit listens on %v, with them on %v", bareListen, listen)
		}
	}
	if !slices.ContainsFunc(mapsValues(listen), func(l listener) bool { return l.role == "agent" }) {
		fail("apmkit would run no Pinpoint input with this configuration")
	}

	declared := map[int]bool{}
	for _, p := range c.Ports {
		declared[p.ContainerPort] = true
		if _, ok := listen[p.ContainerPort]; !ok {
			fail("containerPort %d (%s) is not a port apmkit listens on with this config (%v)", p.ContainerPort, p.Name, listen)
		}
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			fail("hostPort %d for containerPort %d: keep them equal so agents use the default ports on the node", p.HostPort, p.ContainerPort)
		}
	}
	for port, l := range listen {
		if !declared[port] {
			fail("apmkit listens on %d (%s) but no containerPort declares it", port, l.role)
		}
	}

	for name, pr := range map[string]*probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if pr == nil {
			if name != "startupProbe" {
				fail("%s missing", name)
			}
			continue
		}
		if pr.HTTPGet == nil || pr.HTTPGet.Path != "/v1/ping" {
			fail("%s: want httpGet /v1/ping", name)
			continue
		}
		n, ok := containerPortNumber(c, pr.HTTPGet.Port)
		if l := listen[n]; !ok || l.role != "http-api" {
			fail("%s: port %q is not apmkit's HTTP API port", name, pr.HTTPGet.Port.s)
		}
	}

	for _, kind := range []string{"requests", "limits"} {
		m := c.Resources.Requests
		if kind == "limits" {
			m = c.Resources.Limits
		}
		for _, r := range []string{"cpu", "memory"} {
			if m[r] == "" {
				fail("resources.%s.%s missing", kind, r)
			}
		}
	}
	if v, ok := env["GOMEMLIMIT"]; ok {
		lim, err1 := bytesOf(v)
		mem, err2 := bytesOf(c.Resources.Limits["memory"])
		if err1 != nil || err2 != nil || lim >= mem {
			fail("GOMEMLIMIT %s must be below the memory limit %s", v, c.Resources.Limits["memory"])
		}
	}
	if !isTrue(pod.SecurityContext.RunAsNonRoot) && !isTrue(c.SecurityContext.RunAsNonRoot) {
		fail("runAsNonRoot is not set")
	}
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		fail("readOnlyRootFilesystem is not set: apmkit writes only to its data dir")
	}
	return &workload{obj: o, labels: spec.Template.Metadata.Labels, container: c, listen: listen}, errs
}

func mapsValues[V any](m map[int]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

var quantity = regexp.MustCompile(`^(\d+)(Ki|Mi|Gi|KiB|MiB|GiB)?$`)

// bytesOf reads the binary-suffixed sizes Kubernetes (Mi) and GOMEMLIMIT (MiB) use here.
func bytesOf(s string) (int64, error) {
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: use a number with Ki, Mi or Gi", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch strings.TrimSuffix(m[2], "B") {
	case "Ki":
		n <<= 10
	case "Mi":
		n <<= 20
	case "Gi":
		n <<= 30
	}
	return n, nil
}

// checkManifests runs every check over a set of manifest files and returns the problems,
// each naming its file and object.
func checkManifests(t *testing.T, files map[string]string, dockerfile string) []error {
	var errs []error
	objs, err := loadManifests(files)
	if err != nil {
		return []error{err}
	}
	img, err := parseImage(dockerfile)
	if err != nil {
		return []error{err}
	}
	namespaces := map[string]bool{}
	for _, o := range objs {
		if o.Kind == "Namespace" {
			namespaces[o.Metadata.Name] = true
		}
	}
	var workloads []*workload
	for _, o := range objs {
		if o.Kind != "Namespace" && o.Kind != "Kustomization" && len(namespaces) > 0 && !namespaces[o.Metadata.Namespace] {
			errs = append(errs, fmt.Errorf("%s: namespace %q is not the manifests' Namespace", o, o.Metadata.Namespace))
		}
		switch o.Kind {
		case "Deployment", "DaemonSet", "StatefulSet":
			if o.Metadata.Labels["app.kubernetes.io/name"] != "apmkit" {
				continue // what apmkit uses, such as the scale-out variant's Redis
			}
			w, werrs := checkWorkload(t, objs, o, img)
			for _, err := range werrs {
				errs = append(errs, fmt.Errorf("%s: %w", o, err))
			}
			if w != nil {
				workloads = append(workloads, w)
			}
		case "Kustomization":
			for _, r := range o.Resources {
				if _, ok := files[r]; !ok {
					errs = append(errs, fmt.Errorf("%s: resource %s does not exist", o, r))
				}
			}
		}
	}
	for _, o := range objs {
		if o.Kind == "Service" && o.Metadata.Labels["app.kubernetes.io/name"] == "apmkit" {
			errs = append(errs, checkService(o, workloads)...)
		}
	}
	return errs
}

// checkService checks that a Service selects apmkit pods and that each of its ports reaches
// a port apmkit listens on, the well-known ones reaching the listener of their role.
func checkService(o *object, workloads []*workload) []error {
	var spec serviceSpec
	if err := o.Spec.Decode(&spec); err != nil {
		return []error{fmt.Errorf("%s: %w", o, err)}
	}
	var errs []error
	selected := 0
	for _, w := range workloads {
		if w.obj.Metadata.Namespace != o.Metadata.Namespace || !matches(spec.Selector, w.labels) {
			continue
		}
		selected++
		for _, p := range spec.Ports {
			target := p.TargetPort
			if target.s == "" {
				target.s = strconv.Itoa(p.Port)
			}
			n, ok := containerPortNumber(w.container, target)
			l, listening := w.listen[n]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: port %d: targetPort %q is no containerPort of %s", o, p.Port, target.s, w.obj))
			case !listening:
				errs = append(errs, fmt.Errorf("%s: port %d: targetPort %q (%d) is not a port apmkit listens on in %s", o, p.Port, target.s, n, w.obj))
			case defaultRolePorts[p.Port] != "" && defaultRolePorts[p.Port] != l.role:
				errs = append(errs, fmt.Errorf("%s: port %d reaches apmkit's %s listener; agents expect %s there", o, p.Port, l.role, defaultRolePorts[p.Port]))
			}
		}
	}
	if selected == 0 {
		errs = append(errs, fmt.Errorf("%s: selects no apmkit pod in these manifests", o))
	}
	return errs
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestManifestsMatchApmkit is the consistency check of deploy/kubernetes: it simulates each
// pod (image entrypoint and ENV, mounted ConfigMap keys, resolved env) and runs apmkit's
// config loader on it, then checks env names, ports, probes, resources and security.
func TestManifestsMatchApmkit(t *testing.T) {
	for _, dir := range variants {
		for _, err := range checkManifests(t, readManifestsIn(t, dir), readFile(t, filepath.Join(repoRoot, "Dockerfile"))) {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

// TestConfigMapConfsLoad loads every *.conf key of every ConfigMap on its own (as the only
// file in conf.d/pinpoint/, no environment) and every key an ENV_DATAKIT_INPUTS refers to
// as that variable: each must be valid apmkit configuration.
func TestConfigMapConfsLoad(t *testing.T) {
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) { testConfigMapConfsLoad(t, readManifestsIn(t, dir)) })
	}
}

func testConfigMapConfsLoad(t *testing.T, files map[string]string) {
	objs, err := loadManifests(files)
	if err != nil {
		t.Fatal(err)
	}
	confs := 0
	for _, o := range objs {
		if o.Kind != "ConfigMap" {
			continue
		}
		for key, text := range o.Data {
			var environ []string
			dir := t.TempDir()
			switch {
			case strings.HasSuffix(key, ".conf"):
				if err := os.MkdirAll(filepath.Join(dir, "pinpoint"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "pinpoint", key), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			case strings.HasSuffix(key, ".toml"):
				environ = []string{config.EnvDatakitInputs + "=" + text}
			default:
				continue
			}
			confs++
			cfg, err := config.Load(config.Options{ConfDir: dir, DataDir: t.TempDir(), Environ: environ})
			if err != nil {
				t.Errorf("%s: key %s: %v", o, key, err)
				continue
			}
			if len(cfg.Inputs) == 0 {
				t.Errorf("%s: key %s configures no input", o, key)
			}
		}
	}
	if confs == 0 {
		t.Fatal("no ConfigMap holds a .conf or .toml key")
	}
}

// TestManifestMistakesAreCaught applies one mistake at a time to the real manifests and
// expects the checks to name it: the consistency test can fail.
func TestManifestMistakesAreCaught(t *testing.T) {
	files := readManifests(t)
	dockerfile := readFile(t, filepath.Join(repoRoot, "Dockerfile"))
	if errs := checkManifests(t, files, dockerfile); len(errs) > 0 {
		t.Fatalf("the manifests themselves fail: %v", errs)
	}
	cases := []struct {
		name, file, old, new, want string // file "Dockerfile" mutates the image
	}{
		{"unknown env name", "deployment-env.yaml", "ENV_INPUT_PINPOINT_SPAN_ADDRESS", "ENV_INPUT_PINPOINT_SPANADDRESS", "apmkit does not read it"},
		{"env name apmkit does not have", "deployment.yaml", "name: ENV_LOG_LEVEL", "name: ENV_LOGLEVEL", "ENV_LOGLEVEL: apmkit does not read it"},
		{"loopback address in the ConfigMap", "configmap.yaml", `address = "0.0.0.0:9991"`, `address = "127.0.0.1:9991"`, "loopback only"},
		{"loopback HTTP API", "daemonset.yaml", `value: "0.0.0.0:9529"`, `value: "127.0.0.1:9529"`, "http-api listens on 127.0.0.1:9529"},
		{"no HTTP API in the pod", "deployment.yaml", `value: "0.0.0.0:9529"`, `value: ""`, "not apmkit's HTTP API port"},
		{"containerPort apmkit does not listen on", "deployment.yaml", "containerPort: 9993", "containerPort: 9994", "containerPort 9994 (span) is not a port apmkit listens on"},
		{"listener without containerPort", "daemonset.yaml", "containerPort: 9992\n              hostPort: 9992", "containerPort: 9995\n              hostPort: 9995", "apmkit listens on 9992 (stat) but no containerPort"},
		{"span port mapped to the stat listener", "service.yaml", "port: 9993\n      targetPort: span", "port: 9993\n      targetPort: stat", "port 9993 reaches apmkit's stat listener"},
		{"targetPort that is no containerPort", "service.yaml", "targetPort: agent", "targetPort: grpc", `targetPort "grpc" is no containerPort`},
		{"probe on another path", "deployment.yaml", "path: /v1/ping\n              port: http-api\n            periodSeconds: 10", "path: /healthz\n              port: http-api\n            periodSeconds: 10", "readinessProbe: want httpGet /v1/ping"},
		{"probe on an agent port", "daemonset.yaml", "path: /v1/ping\n              port: http-api\n            periodSeconds: 20", "path: /v1/ping\n              port: agent\n            periodSeconds: 20", "livenessProbe: port \"agent\" is not apmkit's HTTP API port"},
		{"invalid TOML", "configmap.yaml", "sampling_rate = 1.0\n\n      # Added", "sampling_rate = \"all\"\n\n      # Added", "apmkit refuses this configuration"},
		{"unknown option in the ConfigMap", "configmap.yaml", "del_message = false\n\n      [inputs.pinpoint.sampler]\n        sampling_rate = 1.0\n\n      # Added", "delete_message = false\n\n      [inputs.pinpoint.sampler]\n        sampling_rate = 1.0\n\n      # Added", `unknown key "delete_message"`},
		{"required Secret missing", "deployment.yaml", "key: url\n                  optional: true", "key: uri\n                  optional: false", "has no key \"uri\""},
		{"bad DataWay URL in a user's Secret", "user-secret.yaml", "", userSecret("https://openway.guance.com"), "missing the token query"},
		{"placeholder DataWay token in a user's Secret", "user-secret.yaml", "", userSecret("https://openway.guance.com?token=tkn_REPLACE_ME"), "placeholder (REPLACE_ME)"},
		{"data dir not on a volume", "deployment-env.yaml", "mountPath: /var/lib/apmkit", "mountPath: /var/lib/apmkit-data", "no volume is mounted at the data dir"},
		{"no memory limit", "daemonset.yaml", "cpu: \"2\"\n              memory: 512Mi", "cpu: \"2\"", "resources.limits.memory missing"},
		{"GOMEMLIMIT above the limit", "deployment.yaml", `value: "400MiB"`, `value: "1GiB"`, "GOMEMLIMIT 1GiB must be below"},
		{"root filesystem writable", "deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"Service selecting nothing", "service.yaml", "app.kubernetes.io/component: collector", "app.kubernetes.io/component: apmkit", "selects no apmkit pod"},
		{"kustomization naming a missing file", "kustomization.yaml", "- pvc.yaml", "- volume.yaml", "resource volume.yaml does not exist"},
		{"image entrypoint with another data dir", "Dockerfile", `"--data-dir", "/var/lib/apmkit"`, `"--data-dir", "/data"`, "no volume is mounted at the data dir /data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mutated := map[string]string{}
			for k, v := range files {
				mutated[k] = v
			}
			df := dockerfile
			if c.file == "Dockerfile" {
				df = strings.Replace(dockerfile, c.old, c.new, 1)
				if df == dockerfile {
					t.Fatalf("%q is not in the Dockerfile: update this case", c.old)
				}
			} else if _, exists := files[c.file]; !exists && c.old == "" {
				mutated[c.file] = c.new // a file the user adds, e.g. their Secret
			} else {
				mutated[c.file] = strings.Replace(files[c.file], c.old, c.new, 1)
				if mutated[c.file] == files[c.file] {
					t.Fatalf("%q is not in %s: update this case", c.old, c.file)
				}
			}
			errs := checkManifests(t, mutated, df)
			var all bytes.Buffer
			for _, err := range errs {
				fmt.Fprintln(&all, err)
			}
			if !strings.Contains(all.String(), c.want) {
				t.Errorf("want an error containing %q, got:\n%s", c.want, all.String())
			}
		})
	}
}

// userSecret is the Secret apmkit-dataway as a user creates it (deploy/kubernetes ships none).
func userSecret(url string) string {
	return "apiVersion: v1\nkind: Secret\nmetadata:\n  name: apmkit-dataway\n  namespace: apmkit\ntype: Opaque\nstringData:\n  url: \"" + url + "\"\n"
}

// TestNoPlaceholderTokenShipped: the default kustomization ships no DataWay token (apmkit
// refuses placeholders such as tkn_REPLACE_ME); the dataway/ overlay generates the Secret
// from a file the user writes, under the name and key the workloads read.
func TestNoPlaceholderTokenShipped(t *testing.T) {
	for _, dir := range variants {
		for name, text := range readManifestsIn(t, dir) {
			if strings.Contains(text, "REPLACE_ME") {
				t.Errorf("%s/%s ships a placeholder token", dir, name)
			}
			if strings.Contains(text, "kind: Secret") {
				t.Errorf("%s/%s ships a Secret: the user creates it", dir, name)
			}
		}
	}
	overlay := readFile(t, filepath.Join(manifestDir, "dataway", "kustomization.yaml"))
	var k struct {
		Resources       []string `yaml:"resources"`
		SecretGenerator []struct {
			Name      string   `yaml:"name"`
			Namespace string   `yaml:"namespace"`
			Envs      []string `yaml:"envs"`
			Options   struct {
				DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
			} `yaml:"options"`
		} `yaml:"secretGenerator"`
	}
	if err := yaml.Unmarshal([]byte(overlay), &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "..") || len(k.SecretGenerator) != 1 {
		t.Fatalf("dataway overlay: %+v", k)
	}
	g := k.SecretGenerator[0]
	if g.Name != "apmkit-dataway" || g.Namespace != "apmkit" || !g.Options.DisableNameSuffixHash || len(g.Envs) != 1 {
		t.Fatalf("dataway overlay generator: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(manifestDir, "dataway", g.Envs[0])); err == nil {
		t.Errorf("dataway/%s is shipped: it holds the user's token", g.Envs[0])
	}
	if strings.Contains(overlay, "REPLACE_ME") {
		t.Error("the overlay ships a placeholder token")
	}
}
