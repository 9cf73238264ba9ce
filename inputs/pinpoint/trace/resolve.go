package trace

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

// ref is one metadata id a span refers to.
type ref struct {
	kind refKind
	id   int64
	uid  string // SQL-UID bytes
}

// resolver looks names up in the sender's metadata for one conversion. It remembers
// lookups (a span's events repeat the same few ids) and records the ids it could not
// resolve, so the span can be held and re-checked cheaply when metadata arrives.
type resolver struct {
	meta   Metadata
	agent  meta.AgentKey
	java   bool // shorten API names the Java way
	memo   []memoEntry
	misses []ref // distinct
	count  [numRefKinds]int
}

type memoEntry struct {
	ref
	text, short string
	ok          bool
}

// maxMemo bounds the memo; a span with more distinct ids just looks the rest up again.
const maxMemo = 64

func (r *resolver) reset(m Metadata, agent meta.AgentKey, java bool) {
	r.meta, r.agent, r.java = m, agent, java
	r.memo = r.memo[:0]
	r.misses = r.misses[:0]
	r.count = [numRefKinds]int{}
}

func (r *resolver) lookup(k ref, fetch func() (string, bool)) (*memoEntry, bool) {
	for i := range r.memo {
		if r.memo[i].ref == k {
			return &r.memo[i], r.memo[i].ok
		}
	}
	text, ok := fetch()
	e := memoEntry{ref: k, text: text, ok: ok}
	if !ok {
		r.misses = append(r.misses, k)
	}
	if len(r.memo) < maxMemo {
		r.memo = append(r.memo, e)
		return &r.memo[len(r.memo)-1], ok
	}
	return &e, ok
}

// miss counts one placeholder written.
func (r *resolver) miss(k refKind) { r.count[k]++ }

// api returns an API's full text and its short form (the operation).
func (r *resolver) api(id int32) (full, short string, ok bool) {
	e, ok := r.lookup(ref{kind: refAPI, id: int64(id)}, func() (string, bool) {
		a, ok := r.meta.API(r.agent, id)
		return a.Info, ok
	})
	if !ok {
		r.miss(refAPI)
		return "", "", false
	}
	if e.short == "" {
		// Cleaned here, once per API of the unit, because operation is a tag.
		e.short = point.CleanTagValue(shortAPIName(e.text, r.java))
	}
	return e.text, e.short, true
}

func (r *resolver) text(kind refKind, id int32, get func(meta.AgentKey, int32) (string, bool)) (string, bool) {
	e, ok := r.lookup(ref{kind: kind, id: int64(id)}, func() (string, bool) { return get(r.agent, id) })
	if !ok {
		r.miss(kind)
	}
	return e.text, ok
}

func (r *resolver) sql(id int32) (string, bool) { return r.text(refSQL, id, r.meta.SQL) }

func (r *resolver) str(id int32) (string, bool) { return r.text(refString, id, r.meta.String) }

func (r *resolver) sqlUID(uid []byte) (string, bool) {
	e, ok := r.lookup(ref{kind: refSQLUID, uid: string(uid)}, func() (string, bool) { return r.meta.SQLUID(r.agent, uid) })
	if !ok {
		r.miss(refSQLUID)
	}
	return e.text, ok
}

// exceptions returns an exception chain; the chain is not memoised (one per error).
func (r *resolver) exceptions(id int64) ([]*pb.PException, bool) {
	chain, ok := r.meta.Exceptions(r.agent, id)
	if !ok {
		k := ref{kind: refException, id: id}
		r.misses = append(r.misses, k)
		r.miss(refException)
	}
	return chain, ok
}

// resolvable reports whether every ref can be resolved now (a held span's re-check).
func resolvable(m Metadata, agent meta.AgentKey, refs []ref) bool {
	for _, k := range refs {
		var ok bool
		switch k.kind {
		case refAPI:
			_, ok = m.API(agent, int32(k.id))
		case refSQL:
			_, ok = m.SQL(agent, int32(k.id))
		case refSQLUID:
			_, ok = m.SQLUID(agent, []byte(k.uid))
		case refString:
			_, ok = m.String(agent, int32(k.id))
		case refException:
			_, ok = m.Exceptions(agent, k.id)
		}
		if !ok {
			return false
		}
	}
	return true
}

// appendPlaceholder writes the visible stand-in of an unresolved id, e.g. "api:12".
func appendPlaceholder(b []byte, k refKind, id int64) []byte {
	b = append(b, refKindNames[k]...)
	b = append(b, ':')
	return strconv.AppendInt(b, id, 10)
}

func appendUIDPlaceholder(b []byte, uid []byte) []byte {
	b = append(b, refKindNames[refSQLUID]...)
	b = append(b, ':')
	return hex.AppendEncode(b, uid)
}

// shortAPIName is the operation of an API. Java method descriptors such as
// "com.example.DemoController.demo2(java.lang.String name)" become
// "DemoController.demo2()": class and method, no package, no parameters. Names that are
// not method descriptors ("Tomcat Servlet Process") and the APIs of agents in other
// languages (Go's "main.main.proxy.func3()", "http/Client.Do()") are kept as they are:
// their dots are not Java packages.
func shortAPIName(info string, java bool) string {
	if !java {
		return info
	}
	paren := strings.IndexByte(info, '(')
	if paren <= 0 {
		return info
	}
	head := info[:paren]
	dot := strings.LastIndexByte(head, '.')
	if dot <= 0 {
		return head + "()"
	}
	if prev := strings.LastIndexByte(head[:dot], '.'); prev >= 0 {
		head = head[prev+1:]
	}
	if info[paren+1:] == ")" {
		return info[len(info)-len(head)-2:] // already short: no allocation
	}
	return head + "()"
}

// javaStyleAPI tells whether an agent's API names are Java method descriptors. Pinpoint's
// agents for Node.js (14xx), PHP (15xx), Python (17xx) and Go (18xx) name their APIs
// differently; every other server type is a Java agent's. The sender's servicetype header
// decides; without one (-1), the agent's PAgentInfo (info, nil when unknown).
func javaStyleAPI(s *meta.Sender, info *pb.PAgentInfo) bool {
	st := s.ServiceType
	if st <= 0 {
		st = info.GetServiceType()
	}
	switch st / 100 {
	case 14, 15, 17, 18:
		return false
	}
	return true
}
