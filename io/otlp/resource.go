package otlp

import (
	"strings"

	"github.com/apmkit/apmkit/internal/version"
	"github.com/apmkit/apmkit/io/lprecord"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
)

// Resource attributes (docs/OTLP.md): the same for an agent's spans and metrics.
const (
	attrServiceName     = "service.name"
	attrServiceInstance = "service.instance.id"
	attrHostName        = "host.name"
	attrSDKLanguage     = "telemetry.sdk.language"
	attrAgentName       = "pinpoint.agent_name"
	unknownService      = "unknown_service"
)

// scope names what made the data: apmkit's Pinpoint input.
func scope() *commonpb.InstrumentationScope {
	return &commonpb.InstrumentationScope{Name: "apmkit/pinpoint", Version: version.Version}
}

// agentRes is what identifies an agent's resource: its service, agent id and name, host,
// and the tags beyond the schema's (the input's and global tags, in key order).
type agentRes struct {
	service, agentID, agentName, host string
	extra                             []lprecord.KV
}

// key is the grouping key: every attribute, \x00-separated (tag values hold no NUL).
func (r agentRes) key() string {
	var b strings.Builder
	for _, s := range []string{r.service, r.agentID, r.agentName, r.host} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, kv := range r.extra {
		b.WriteString(kv.Key)
		b.WriteByte(0)
		b.WriteString(kv.Value)
		b.WriteByte(0)
	}
	return b.String()
}

func (r agentRes) resource(language string) *resourcepb.Resource {
	var a attrs
	service := r.service
	if service == "" {
		service = unknownService
	}
	a.str(attrServiceName, service)
	a.str(attrServiceInstance, r.agentID)
	a.str(attrHostName, r.host)
	a.str(attrAgentName, r.agentName)
	a.str(attrSDKLanguage, language)
	for _, kv := range r.extra {
		a.str(kv.Key, kv.Value)
	}
	return &resourcepb.Resource{Attributes: a}
}

// group is one resource's items, with the language its rows told, if any.
type group[T any] struct {
	res      agentRes
	language string
	items    []T
}

// groups keeps resources in first-seen order, so a request is built deterministically.
type groups[T any] struct {
	byKey map[string]*group[T]
	order []*group[T]
}

func (g *groups[T]) get(r agentRes) *group[T] {
	k := r.key()
	if x, ok := g.byKey[k]; ok {
		return x
	}
	if g.byKey == nil {
		g.byKey = map[string]*group[T]{}
	}
	x := &group[T]{res: r}
	g.byKey[k] = x
	g.order = append(g.order, x)
	return x
}

// noteLanguage keeps the first language a row tells.
func (x *group[T]) noteLanguage(lang string) {
	if x.language == "" {
		x.language = lang
	}
}

// languageOf is the agent language a service type tells (telemetry.sdk.language). The
// Go agent's types start with GO, the C agent's with PHP, PYTHON, NODE or CPP. Every other
// agent or server type (TOMCAT, SPRING_BOOT, JETTY...) is the Java agent's, so server says
// whether the type is an agent's or an entry span's: only those name the agent itself,
// an event's type (MYSQL_EXECUTE_QUERY) could come from any agent.
func languageOf(serviceType string, server bool) string {
	for _, p := range [...]struct{ prefix, lang string }{
		{"GO", "go"}, {"PHP", "php"}, {"PYTHON", "python"}, {"NODE", "nodejs"}, {"CPP", "cpp"},
	} {
		if serviceType == p.prefix || strings.HasPrefix(serviceType, p.prefix+"_") {
			return p.lang
		}
	}
	if server && serviceType != "" && !strings.HasPrefix(serviceType, "UNKNOWN") {
		return "java"
	}
	return ""
}
