// Package servicetype knows what Pinpoint's numeric codes mean: the
// serviceType of agents, spans and span events (1010 = TOMCAT, 2101 =
// MYSQL_EXECUTE_QUERY, ...) and the AnnotationKey of annotations (20 =
// SQL-ID, -52 = ExceptionChainId, ...).
//
// A Table holds the built-in definitions (see builtin.go) plus the entries of
// the users' plugin type-provider.yml files (see provider.go). Agents send
// only codes, so a span cannot be named, categorised (source_type) or linked
// in the server map without this table. Unknown codes never fail a lookup:
// they get a synthesized UNKNOWN_<code> type whose category still follows
// from the code range.
//
// A Table is immutable once built and safe for concurrent use.
package servicetype

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
)

// Category is the code range a service type belongs to. Pinpoint derives a
// node's role from it (server, database, RPC client, ...), and apmkit derives
// a span's source_type from it.
type Category int

// The categories, with the code ranges of Pinpoint's ServiceTypeCategory.
const (
	Undefined     Category = iota // -1, and codes outside every range (3000-4999, >9999, < -1)
	Internal                      // 0-999: Pinpoint internals (USER, ASYNC, ...)
	Server                        // 1000-1999: servers / application entry points
	Database                      // 2000-2999
	Library                       // 5000-7999: in-process libraries (Spring, pools, ...)
	Cache                         // 8000-8299 and the private 8900-8999
	MessageBroker                 // 8300-8799
	HBase                         // 8800-8899
	RPC                           // 9000-9999: RPC / HTTP clients
)

// CategoryOf returns the category of a code from its range alone, so codes
// no table knows still get one.
func CategoryOf(code int32) Category {
	switch {
	case code >= 0 && code <= 999:
		return Internal
	case code >= 1000 && code <= 1999:
		return Server
	case code >= 2000 && code <= 2999:
		return Database
	case code >= 5000 && code <= 7999:
		return Library
	case code >= 8000 && code <= 8299, code >= 8900 && code <= 8999:
		return Cache
	case code >= 8300 && code <= 8799:
		return MessageBroker
	case code >= 8800 && code <= 8899:
		return HBase
	case code >= 9000 && code <= 9999:
		return RPC
	}
	return Undefined
}

// String returns the category's name as Pinpoint spells it.
func (c Category) String() string {
	switch c {
	case Undefined:
		return "UNDEFINED"
	case Internal:
		return "INTERNAL"
	case Server:
		return "SERVER"
	case Database:
		return "DATABASE"
	case Library:
		return "LIBRARY"
	case Cache:
		return "CACHE"
	case MessageBroker:
		return "MESSAGE_BROKER"
	case HBase:
		return "HBASE"
	case RPC:
		return "RPC"
	}
	return "Category(" + strconv.Itoa(int(c)) + ")"
}

// The source_type tag values of docs/SCHEMA.md (DataKit's tracing
// source types).
const (
	SourceWeb          = "web"
	SourceDB           = "db"
	SourceCache        = "cache"
	SourceHTTP         = "http"
	SourceMessageQueue = "message_queue"
	SourceCustom       = "custom"
)

// SourceType maps the category to the span's source_type tag, as
// docs/SCHEMA.md defines it: SERVER -> web, DATABASE -> db,
// CACHE -> cache, RPC -> http, MESSAGE_BROKER -> message_queue, everything
// else (internal, library, HBase, undefined) -> custom.
func (c Category) SourceType() string {
	switch c {
	case Server:
		return SourceWeb
	case Database:
		return SourceDB
	case Cache:
		return SourceCache
	case RPC:
		return SourceHTTP
	case MessageBroker:
		return SourceMessageQueue
	}
	return SourceCustom
}

// MatcherKind says which annotation Pinpoint shows as an event's argument in
// its call tree.
type MatcherKind uint8

const (
	MatchNone  MatcherKind = iota // no argument annotation
	MatchArgs                     // the args[N] annotations (-1..-11)
	MatchExact                    // the annotation with Matcher.Code
)

func (k MatcherKind) String() string {
	switch k {
	case MatchNone:
		return "none"
	case MatchArgs:
		return "args"
	case MatchExact:
		return "exact"
	}
	return "MatcherKind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText writes the kind as type-provider.yml spells it, so persisted
// tables stay readable.
func (k MatcherKind) MarshalText() ([]byte, error) {
	switch k {
	case MatchNone, MatchArgs, MatchExact:
		return []byte(k.String()), nil
	}
	return nil, fmt.Errorf("servicetype: invalid matcher kind %d", k)
}

// UnmarshalText accepts none, args and exact (any case, as Pinpoint does).
func (k *MatcherKind) UnmarshalText(b []byte) error {
	kind, ok := parseMatcherKind(string(b))
	if !ok {
		return fmt.Errorf("matcher type %q is not one of args, exact, none", b)
	}
	*k = kind
	return nil
}

// Matcher is the annotation a service type's events display as their
// argument, when the definition names one (a display hint; it does not
// change how data is decoded).
type Matcher struct {
	Kind MatcherKind `json:"type"`
	Code int32       `json:"code,omitempty"` // annotation key; only for MatchExact
}

// Type is one service type definition.
type Type struct {
	Code int32  `json:"code"`
	Name string `json:"name"` // unique, e.g. MYSQL_EXECUTE_QUERY
	// Desc is Pinpoint's display group, e.g. MYSQL for MYSQL_EXECUTE_QUERY;
	// it equals Name when the definition gives none.
	Desc string `json:"desc"`
	// Terminal: the callee has no agent (a database, a cache), so the
	// server map draws it from the event's destinationId; events of this
	// type are exit spans.
	Terminal bool `json:"terminal,omitempty"`
	// Queue: the callee is a message broker node.
	Queue bool `json:"queue,omitempty"`
	// RecordStatistics: calls of this type are counted as server-map edges
	// (and, for server types, the node's own response statistics).
	RecordStatistics bool `json:"recordStatistics,omitempty"`
	// IncludeDestinationID: the destinationId is part of the node identity
	// (e.g. one node per database).
	IncludeDestinationID bool `json:"includeDestinationId,omitempty"`
	// Alias: the node is shown under the name of its destination.
	Alias   bool    `json:"alias,omitempty"`
	Matcher Matcher `json:"matcher"`
	// Provider is the type-provider.yml file that defined the type; empty
	// for built-in types.
	Provider string `json:"provider,omitempty"`
}

// Category returns the category of the type's code range.
func (t Type) Category() Category { return CategoryOf(t.Code) }

// SourceType returns the span source_type for this type.
func (t Type) SourceType() string { return t.Category().SourceType() }

// unknownType is what lookups of an undefined code return: a name that says
// what happened and still carries the code.
func unknownType(code int32) Type {
	name := "UNKNOWN_" + strconv.FormatInt(int64(code), 10)
	return Type{Code: code, Name: name, Desc: name}
}

// AnnotationKey is one annotation key definition.
type AnnotationKey struct {
	Code int32  `json:"code"`
	Name string `json:"name"` // unique, e.g. SQL-ID, http.url
	// ViewInRecordSet: Pinpoint shows the annotation as its own row in the
	// call tree (a value users want to read, not an internal id).
	ViewInRecordSet bool `json:"viewInRecordSet,omitempty"`
	// Provider is the type-provider.yml file that defined the key; empty
	// for built-in keys.
	Provider string `json:"provider,omitempty"`
}

// Table maps codes to definitions. Build one with Builtin, Load, New or
// UnmarshalBinary; it is never changed afterwards, so it is safe for
// concurrent reads. The zero Table behaves like Builtin().
type Table struct {
	types           map[int32]Type
	typeNames       map[string]int32
	annotations     map[int32]AnnotationKey
	annotationNames map[string]int32
	// customTypes and customAnnotations are the provider entries, sorted by
	// code, kept apart so they can be listed and persisted cheaply.
	customTypes       []Type
	customAnnotations []AnnotationKey
}

// builtin builds the built-in table once; it is read-only afterwards.
var builtin = sync.OnceValue(func() *Table {
	t, err := newBuiltin()
	if err != nil {
		// The built-in rows are constants of this package; TestBuiltin
		// catches a bad row long before a release.
		panic(err)
	}
	return t
})

// Builtin returns the table of built-in definitions. All callers share one
// immutable table.
func Builtin() *Table { return builtin() }

// resolved returns the table to read: the zero Table (or nil) reads as the
// built-in one, so a forgotten initialisation degrades to built-in names
// instead of every code turning UNKNOWN.
func (t *Table) resolved() *Table {
	if t == nil || t.types == nil {
		return Builtin()
	}
	return t
}

// Type returns the definition of code. It never fails: an undefined code
// gets a synthesized UNKNOWN_<code> type with no properties, whose category
// still follows from the code range.
func (t *Table) Type(code int32) Type {
	if st, ok := t.resolved().types[code]; ok {
		return st
	}
	return unknownType(code)
}

// Lookup returns the definition of code and whether the table has one, for
// callers that count unknown codes.
func (t *Table) Lookup(code int32) (Type, bool) {
	st, ok := t.resolved().types[code]
	if !ok {
		return unknownType(code), false
	}
	return st, true
}

// ByName returns the type named name (names are unique).
func (t *Table) ByName(name string) (Type, bool) {
	r := t.resolved()
	code, ok := r.typeNames[name]
	if !ok {
		return Type{}, false
	}
	return r.types[code], true
}

// Annotation returns the definition of an annotation key code.
func (t *Table) Annotation(code int32) (AnnotationKey, bool) {
	k, ok := t.resolved().annotations[code]
	return k, ok
}

// Custom returns the service types that came from type-provider files,
// sorted by code. The slice is a copy.
func (t *Table) Custom() []Type {
	return append([]Type(nil), t.resolved().customTypes...)
}

// CustomAnnotations returns the annotation keys that came from
// type-provider files, sorted by code. The slice is a copy.
func (t *Table) CustomAnnotations() []AnnotationKey {
	return append([]AnnotationKey(nil), t.resolved().customAnnotations...)
}

// Types returns every defined service type, sorted by code (for listings
// such as a sample config or a debug page).
func (t *Table) Types() []Type {
	r := t.resolved()
	out := make([]Type, 0, len(r.types))
	for _, st := range r.types {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Annotations returns every defined annotation key, sorted by code.
func (t *Table) Annotations() []AnnotationKey {
	r := t.resolved()
	out := make([]AnnotationKey, 0, len(r.annotations))
	for _, k := range r.annotations {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}
