package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

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
