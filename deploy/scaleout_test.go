package deploy

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// scaleOutDir is the variant of stateless replicas sharing one Redis.
var scaleOutDir = filepath.Join(manifestDir, "scale-out")

// checkScaleOut checks what the scale-out variant needs beyond every variant's checks:
// several apmkit replicas with no session affinity and no volume only one pod can mount,
// their cache URL reaching the Redis of these manifests, Redis with its data on a
// volume, and an autoscaler on the apmkit Deployment.
func checkScaleOut(files map[string]string) []error {
	objs, err := loadManifests(files)
	if err != nil {
		return []error{err}
	}
	find := func(kind, name string) *object {
		for _, o := range objs {
			if o.Kind == kind && o.Metadata.Name == name {
				return o
			}
		}
		return nil
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	dep := find("Deployment", "apmkit")
	if dep == nil {
		return []error{errors.New("no Deployment apmkit")}
	}
	var spec struct {
		Replicas     int `yaml:"replicas"`
		workloadSpec `yaml:",inline"`
	}
	if err := dep.Spec.Decode(&spec); err != nil {
		return []error{err}
	}
	if spec.Replicas < 2 {
		fail("%s: replicas %d: the variant runs several", dep, spec.Replicas)
	}
	for _, v := range spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			fail("%s: volume %s is a PersistentVolumeClaim: replicas cannot share one ReadWriteOnce volume", dep, v.Name)
		}
	}
	if svc := find("Service", "apmkit"); svc == nil {
		fail("no Service apmkit")
	} else {
		var s struct {
			SessionAffinity string `yaml:"sessionAffinity"`
		}
		if err := svc.Spec.Decode(&s); err != nil || (s.SessionAffinity != "" && s.SessionAffinity != "None") {
			fail("%s: sessionAffinity %q: replicas share their state, any connection may go to any replica", svc, s.SessionAffinity)
		}
	}
	errs = append(errs, checkRedisURL(objs, dep, spec.Template.Spec.Containers, find)...)
	errs = append(errs, checkAutoscaler(objs, dep)...)
	return errs
}

// checkRedisURL follows ENV_CACHE_REDIS_URL to a Service of the manifests, on its port,
// selecting a StatefulSet whose pods keep their data on a volume claim.
func checkRedisURL(objs []*object, dep *object, containers []container, find func(kind, name string) *object) []error {
	var value string
	for _, c := range containers {
		for _, e := range c.Env {
			if e.Name == "ENV_CACHE_REDIS_URL" {
				value = e.Value
			}
		}
	}
	if value == "" {
		return []error{fmt.Errorf("%s: ENV_CACHE_REDIS_URL is not set: replicas would keep their state apart", dep)}
	}
	u, err := url.Parse(value)
	if err != nil || u.Scheme != "redis" {
		return []error{fmt.Errorf("%s: ENV_CACHE_REDIS_URL %q is not a redis:// URL", dep, value)}
	}
	name, ns, _ := strings.Cut(u.Hostname(), ".")
	ns, _, _ = strings.Cut(ns, ".")
	svc := find("Service", name)
	if svc == nil || svc.Metadata.Namespace != ns {
		return []error{fmt.Errorf("%s: ENV_CACHE_REDIS_URL %q names no Service of these manifests", dep, value)}
	}
	var s serviceSpec
	if err := svc.Spec.Decode(&s); err != nil {
		return []error{err}
	}
	port, _ := strconv.Atoi(u.Port())
	onPort := false
	for _, p := range s.Ports {
		onPort = onPort || p.Port == port
	}
	if !onPort {
		return []error{fmt.Errorf("%s: port %d of ENV_CACHE_REDIS_URL is not a port of %s", dep, port, svc)}
	}
	for _, o := range objs {
		if o.Kind != "StatefulSet" {
			continue
		}
		var st struct {
			workloadSpec         `yaml:",inline"`
			VolumeClaimTemplates []struct{} `yaml:"volumeClaimTemplates"`
		}
		if err := o.Spec.Decode(&st); err == nil && matches(s.Selector, st.Template.Metadata.Labels) {
			if len(st.VolumeClaimTemplates) == 0 {
				return []error{fmt.Errorf("%s: Redis keeps its data on no volume claim", o)}
			}
			return nil
		}
	}
	return []error{fmt.Errorf("%s selects no StatefulSet of these manifests", svc)}
}

// checkAutoscaler wants a HorizontalPodAutoscaler on the apmkit Deployment, by CPU.
func checkAutoscaler(objs []*object, dep *object) []error {
	for _, o := range objs {
		if o.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		var h struct {
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			MaxReplicas int `yaml:"maxReplicas"`
			Metrics     []struct {
				Resource struct {
					Name string `yaml:"name"`
				} `yaml:"resource"`
			} `yaml:"metrics"`
		}
		if err := o.Spec.Decode(&h); err != nil {
			return []error{err}
		}
		if h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != dep.Metadata.Name || o.Metadata.Namespace != dep.Metadata.Namespace {
			return []error{fmt.Errorf("%s scales %s %s, not %s", o, h.ScaleTargetRef.Kind, h.ScaleTargetRef.Name, dep)}
		}
		if h.MinReplicas < 2 || h.MaxReplicas < h.MinReplicas || len(h.Metrics) == 0 || h.Metrics[0].Resource.Name != "cpu" {
			return []error{fmt.Errorf("%s: want 2 <= minReplicas <= maxReplicas and a cpu metric", o)}
		}
		return nil
	}
	return []error{errors.New("no HorizontalPodAutoscaler")}
}

func TestScaleOutVariant(t *testing.T) {
	for _, err := range checkScaleOut(readManifestsIn(t, scaleOutDir)) {
		t.Error(err)
	}
}

// TestScaleOutMistakesAreCaught applies one mistake at a time to the scale-out manifests.
func TestScaleOutMistakesAreCaught(t *testing.T) {
	files := readManifestsIn(t, scaleOutDir)
	cases := []struct{ name, file, old, new, want string }{
		{"one replica", "deployment.yaml", "replicas: 3", "replicas: 1", "replicas 1"},
		{"session affinity", "service.yaml", "spec:\n", "spec:\n  sessionAffinity: ClientIP\n", `sessionAffinity "ClientIP"`},
		{"no Redis URL", "deployment.yaml", "name: ENV_CACHE_REDIS_URL", "name: ENV_CACHE_REDIS_URI", "ENV_CACHE_REDIS_URL is not set"},
		{"Redis URL to another Service", "deployment.yaml", "redis://apmkit-redis.", "redis://redis.", "names no Service"},
		{"Redis URL on another port", "deployment.yaml", "svc:6379/0", "svc:6380/0", "port 6380"},
		{"Redis without a volume", "redis.yaml", "  volumeClaimTemplates:", "  noClaims:", "no volume claim"},
		{"autoscaler on another target", "hpa.yaml", "name: apmkit\n  minReplicas", "name: apmkit-redis\n  minReplicas", "scales Deployment apmkit-redis"},
		{"shared volume claim", "deployment.yaml", "emptyDir:\n            sizeLimit: 2Gi", "persistentVolumeClaim:\n            claimName: apmkit-data", "PersistentVolumeClaim"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mutated := map[string]string{}
			for k, v := range files {
				mutated[k] = v
			}
			mutated[c.file] = strings.Replace(files[c.file], c.old, c.new, 1)
			if mutated[c.file] == files[c.file] {
				t.Fatalf("%q is not in %s: update this case", c.old, c.file)
			}
			var all []string
			for _, err := range checkScaleOut(mutated) {
				all = append(all, err.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), c.want) {
				t.Errorf("want an error containing %q, got:\n%s", c.want, strings.Join(all, "\n"))
			}
		})
	}
}
