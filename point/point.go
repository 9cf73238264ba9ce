// Package point is apmkit's data model: one measurement with sorted tags, typed fields and a
// nanosecond timestamp, and its encoding to InfluxDB line protocol.
package point

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// Category says what kind of data a point is; the uploader keeps one queue and one output
// stream per category (DataWay routes /v1/write/<category>).
type Category uint8

// The categories apmkit knows.
const (
	Metric Category = iota + 1
	Tracing
	Logging
	Object
)

// Categories lists every category in a fixed order (queues, metrics, file streams).
var Categories = []Category{Metric, Tracing, Logging, Object}

// String returns the lower-case name used in URLs, file names and metrics.
func (c Category) String() string {
	switch c {
	case Metric:
		return "metric"
	case Tracing:
		return "tracing"
	case Logging:
		return "logging"
	case Object:
		return "object"
	}
	return fmt.Sprintf("category(%d)", uint8(c))
}

// ParseCategory is the inverse of Category.String.
func ParseCategory(s string) (Category, error) {
	for _, c := range Categories {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown category %q (allowed: metric, tracing, logging, object)", s)
}

// Kind is the type of a field value.
type Kind uint8

// Field value kinds, as line protocol has them.
const (
	KindInt Kind = iota + 1
	KindUint
	KindFloat
	KindString
	KindBool
)

// Tag is one key=value tag. Values are bounded-cardinality strings.
type Tag struct {
	Key, Value string
}

// Field is one typed field. Use the constructors (Int, Uint, Float, String, Bool).
type Field struct {
	Key  string
	kind Kind
	num  uint64 // int64, uint64, float64 bits or bool (0/1)
	str  string
}

// Int makes an integer field.
func Int(key string, v int64) Field { return Field{Key: key, kind: KindInt, num: uint64(v)} }

// Uint makes an unsigned integer field.
func Uint(key string, v uint64) Field { return Field{Key: key, kind: KindUint, num: v} }

// Float makes a float field. NaN and Inf make the point invalid.
func Float(key string, v float64) Field {
	return Field{Key: key, kind: KindFloat, num: math.Float64bits(v)}
}

// String makes a string field.
func String(key, v string) Field { return Field{Key: key, kind: KindString, str: v} }

// Bool makes a boolean field.
func Bool(key string, v bool) Field {
	var n uint64
	if v {
		n = 1
	}
	return Field{Key: key, kind: KindBool, num: n}
}

// Kind returns the value's type.
func (f Field) Kind() Kind { return f.kind }

// IntValue returns the value of an int field.
func (f Field) IntValue() int64 { return int64(f.num) }

// UintValue returns the value of a uint field.
func (f Field) UintValue() uint64 { return f.num }

// FloatValue returns the value of a float field.
func (f Field) FloatValue() float64 { return math.Float64frombits(f.num) }

// StringValue returns the value of a string field.
func (f Field) StringValue() string { return f.str }

// BoolValue returns the value of a bool field.
func (f Field) BoolValue() bool { return f.num != 0 }

// Value returns the value as an interface (int64, uint64, float64, string or bool).
func (f Field) Value() any {
	switch f.kind {
	case KindInt:
		return f.IntValue()
	case KindUint:
		return f.UintValue()
	case KindFloat:
		return f.FloatValue()
	case KindString:
		return f.str
	case KindBool:
		return f.BoolValue()
	}
	return nil
}

// Point is one line of line protocol.
type Point struct {
	Name   string
	Tags   []Tag // sorted by key, unique keys; keep it so through SetTag
	Fields []Field
	Time   int64 // Unix nanoseconds
}

// New returns a point with room for a typical number of tags and fields.
func New(name string, unixNano int64) *Point {
	return &Point{Name: name, Time: unixNano, Tags: make([]Tag, 0, 8), Fields: make([]Field, 0, 8)}
}

// SetTag sets a tag, keeping tags sorted. An empty value removes the tag, since line protocol
// has no empty tag values. Control characters become spaces and a trailing backslash is
// dropped, because line protocol cannot carry them in a tag; a tag never costs a point.
func (p *Point) SetTag(key, value string) {
	value = CleanTagValue(value)
	i := sort.Search(len(p.Tags), func(i int) bool { return p.Tags[i].Key >= key })
	found := i < len(p.Tags) && p.Tags[i].Key == key
	switch {
	case value == "" && found:
		p.Tags = append(p.Tags[:i], p.Tags[i+1:]...)
	case value == "":
	case found:
		p.Tags[i].Value = value
	default:
		p.Tags = append(p.Tags, Tag{})
		copy(p.Tags[i+1:], p.Tags[i:])
		p.Tags[i] = Tag{Key: key, Value: value}
	}
}

// Tag returns a tag's value.
func (p *Point) Tag(key string) (string, bool) {
	i := sort.Search(len(p.Tags), func(i int) bool { return p.Tags[i].Key >= key })
	if i < len(p.Tags) && p.Tags[i].Key == key {
		return p.Tags[i].Value, true
	}
	return "", false
}

// AddField sets a field, replacing one with the same key.
func (p *Point) AddField(f Field) {
	for i := range p.Fields {
		if p.Fields[i].Key == f.Key {
			p.Fields[i] = f
			return
		}
	}
	p.Fields = append(p.Fields, f)
}

// Field returns a field by key.
func (p *Point) Field(key string) (Field, bool) {
	for _, f := range p.Fields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// DelField removes a field; it reports whether the field was there.
func (p *Point) DelField(key string) bool {
	for i := range p.Fields {
		if p.Fields[i].Key == key {
			p.Fields = append(p.Fields[:i], p.Fields[i+1:]...)
			return true
		}
	}
	return false
}

// Clone returns a deep copy (strings are immutable and shared).
func (p *Point) Clone() *Point {
	c := *p
	c.Tags = append([]Tag(nil), p.Tags...)
	c.Fields = append([]Field(nil), p.Fields...)
	return &c
}

// Reasons a point is invalid; the uploader counts rejected points by these.
var (
	ErrNoName       = errors.New("empty measurement name")
	ErrNoFields     = errors.New("no fields")
	ErrBadKey       = errors.New("invalid tag or field key")
	ErrBadTagValue  = errors.New("invalid tag value")
	ErrBadFloat     = errors.New("NaN or Inf field value")
	ErrBadString    = errors.New("string field is not valid UTF-8")
	ErrTagsUnsorted = errors.New("tags not sorted or duplicated")
	ErrDupField     = errors.New("duplicate field key")
)

// Validate reports why a point cannot be written as line protocol, or nil.
func (p *Point) Validate() error {
	if !validName(p.Name) {
		return fmt.Errorf("%w (%q)", ErrNoName, p.Name)
	}
	if len(p.Fields) == 0 {
		return fmt.Errorf("%s: %w", p.Name, ErrNoFields)
	}
	for i, t := range p.Tags {
		if !validName(t.Key) {
			return fmt.Errorf("%s: %w %q", p.Name, ErrBadKey, t.Key)
		}
		if !validName(t.Value) {
			return fmt.Errorf("%s: %w %s=%q", p.Name, ErrBadTagValue, t.Key, t.Value)
		}
		if i > 0 && p.Tags[i-1].Key >= t.Key {
			return fmt.Errorf("%s: %w at %q", p.Name, ErrTagsUnsorted, t.Key)
		}
	}
	for i, f := range p.Fields {
		if !validName(f.Key) {
			return fmt.Errorf("%s: %w %q", p.Name, ErrBadKey, f.Key)
		}
		switch f.kind {
		case KindFloat:
			if v := f.FloatValue(); math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("%s: field %s: %w", p.Name, f.Key, ErrBadFloat)
			}
		case KindString:
			if !utf8.ValidString(f.str) {
				return fmt.Errorf("%s: field %s: %w", p.Name, f.Key, ErrBadString)
			}
		case KindInt, KindUint, KindBool:
		default:
			return fmt.Errorf("%s: field %s: %w (zero Field)", p.Name, f.Key, ErrBadKey)
		}
		for _, g := range p.Fields[:i] {
			if g.Key == f.Key {
				return fmt.Errorf("%s: %w %q", p.Name, ErrDupField, f.Key)
			}
		}
	}
	return nil
}

// validName is line protocol's rule for measurements, keys and tag values: non-empty UTF-8
// without control characters and without a trailing backslash.
func validName(s string) bool {
	if s == "" || !utf8.ValidString(s) || s[len(s)-1] == '\\' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// CleanTagValue makes s a valid tag value: invalid UTF-8 and control characters become
// spaces (then trimmed) and trailing backslashes are removed. It returns "" when nothing
// printable is left.
func CleanTagValue(s string) string {
	if validName(s) {
		return s
	}
	s = strings.ToValidUTF8(s, " ")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimRight(strings.TrimSpace(s), `\`)
}
