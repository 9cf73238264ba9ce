package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/apmkit/apmkit/inputs"
)

// field is one TOML key of a config struct.
type field struct {
	key string
	sf  reflect.StructField
}

// tomlFields lists the TOML keys of a struct type in declaration order.
func tomlFields(t reflect.Type) []field {
	t = deref(t)
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if !sf.IsExported() || key == "-" {
			continue
		}
		if key == "" {
			key = sf.Name
		}
		out = append(out, field{key: key, sf: sf})
	}
	return out
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// unknownKeys turns keys the decoder did not use into one error that names each key and
// the keys allowed where it stands.
func unknownKeys(md toml.MetaData, skip []string, root any) error {
	var errs []error
	for _, key := range md.Undecoded() {
		path := []string(key)
		if len(path) <= len(skip) && slices.Equal(path, skip[:len(path)]) {
			continue // a table we decode in a second pass (e.g. "inputs")
		}
		t, level := typeAt(reflect.TypeOf(root), path)
		if t == nil {
			continue // below an unknown key that is reported on its own
		}
		allowed := make([]string, 0)
		for _, f := range tomlFields(t) {
			allowed = append(allowed, f.key)
		}
		errs = append(errs, fmt.Errorf("unknown key %q in %s (allowed: %s)",
			path[level], tableName(path[:level]), strings.Join(allowed, ", ")))
	}
	return errors.Join(errs...)
}

// typeAt walks path through struct types and returns the struct holding the first unknown
// element and its index. Under "inputs", the element after it names a plugin.
func typeAt(t reflect.Type, path []string) (reflect.Type, int) {
	for i, name := range path {
		t = deref(t)
		if i == 1 && path[0] == "inputs" {
			p, ok := inputs.Get(name)
			if !ok {
				return nil, 0
			}
			t = reflect.TypeOf(p.NewConfig())
			continue
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			t = deref(t.Elem())
		case reflect.Map:
			return nil, 0
		}
		var next reflect.Type
		for _, f := range tomlFields(t) {
			if f.key == name {
				next = f.sf.Type
			}
		}
		if next == nil {
			if i > 0 && path[i-1] == "inputs" {
				return nil, 0
			}
			return t, i
		}
		t = next
	}
	return nil, 0
}

func tableName(path []string) string {
	if len(path) == 0 {
		return "the top level"
	}
	if len(path) == 2 && path[0] == "inputs" {
		return "[[" + strings.Join(path, ".") + "]]"
	}
	return "[" + strings.Join(path, ".") + "]"
}

// decodeError turns the TOML decoder's error into "file:line: message (key k)" when the
// decoder says where.
// what, when not empty, names the table being decoded ("[[inputs.pinpoint]] #1").
func decodeError(source, what string, err error) error {
	if what != "" {
		what += ": "
	}
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Position.Line > 0 {
		msg := pe.Message
		if pe.LastKey != "" {
			msg += fmt.Sprintf(" (key %s)", pe.LastKey)
		}
		return fmt.Errorf("%s:%d: %s%s", source, pe.Position.Line, what, msg)
	}
	if m := decoderLine.FindStringSubmatch(err.Error()); m != nil {
		msg := m[3]
		if m[2] != "" {
			msg += fmt.Sprintf(" (key %s)", m[2])
		}
		return fmt.Errorf("%s:%s: %s%s", source, m[1], what, msg)
	}
	return fmt.Errorf("%s: %s%w", source, what, err)
}

var decoderLine = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (?s:(.*))$`)

var durationKind = reflect.TypeOf(time.Duration(0))

// bareDurations refuses integers given for durations: the decoder reads chunk_wait = 120
// as 120 ns, where the user meant seconds (the environment path already refuses them).
func bareDurations(source, doc string, md toml.MetaData, root any) error {
	var errs []error
	for _, key := range md.Keys() {
		if md.Type(key...) != "Integer" || fieldType(reflect.TypeOf(root), key) != durationKind {
			continue
		}
		last := key[len(key)-1]
		where := source
		if line := lineOf(doc, last); line > 0 {
			where = fmt.Sprintf("%s:%d", source, line)
		}
		errs = append(errs, fmt.Errorf("%s: %s: a bare integer is not a duration (it would be read as nanoseconds); write a unit, e.g. \"%ss\" or \"%sms\"",
			where, strings.Join(key, "."), valueOf(doc, last), valueOf(doc, last)))
	}
	return errors.Join(errs...)
}

// fieldType is the Go type a TOML key path decodes into (nil when unknown). Under
// "inputs", the element after it names a plugin.
func fieldType(t reflect.Type, path []string) reflect.Type {
	for i, name := range path {
		t = deref(t)
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			t = deref(t.Elem())
		}
		if i == 1 && path[0] == "inputs" {
			p, ok := inputs.Get(name)
			if !ok {
				return nil
			}
			t = reflect.TypeOf(p.NewConfig())
			continue
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
			continue
		case reflect.Struct:
		default:
			return nil
		}
		var next reflect.Type
		for _, f := range tomlFields(t) {
			if f.key == name {
				next = f.sf.Type
			}
		}
		if next == nil {
			return nil
		}
		t = next
	}
	return t
}

// lineOf finds the line (1-based) that sets key to an integer; 0 when not found.
func lineOf(doc, key string) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=\s*[+-]?[0-9]`)
	for i, l := range strings.Split(doc, "\n") {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}

// valueOf is the integer key is set to in doc, for the hint ("120" -> write "120s").
func valueOf(doc, key string) string {
	re := regexp.MustCompile(`(?m)^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=\s*([+-]?[0-9_]+)`)
	if m := re.FindStringSubmatch(doc); m != nil {
		return strings.ReplaceAll(m[1], "_", "")
	}
	return "N"
}
