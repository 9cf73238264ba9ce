package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/apmkit/apmkit/inputs"
)

// Samples are rendered from the config structs themselves: every option, its default and
// its `doc` tag, so a sample can never drift from the code. Optional values show their
// `example` tag, commented out.

// MainSample renders conf.d/apmkit.conf.sample.
func MainSample() string {
	var b strings.Builder
	b.WriteString("## apmkit main configuration. Copy to apmkit.conf and edit; every key is optional\n")
	b.WriteString("## and shows its default. Unknown keys are errors.\n\n")
	m := DefaultMain()
	renderer{}.table(&b, "", reflect.ValueOf(&m).Elem(), 0)
	return b.String()
}

// InputSample renders an input's sample config (conf.d/NAME/NAME.conf.sample).
func InputSample(p inputs.Plugin) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n", p.Doc)
	fmt.Fprintf(&b, "## Copy to %s.conf in this folder and edit. Several [[inputs.%s]] tables run several instances.\n", p.Name, p.Name)
	if opts := EnvOptions(p); len(opts) > 0 {
		b.WriteString("## Options marked (env: ...) can also be set with that environment variable; it wins over this file.\n")
	}
	b.WriteString("\n[[inputs." + p.Name + "]]\n")
	cfg := reflect.ValueOf(p.NewConfig())
	for cfg.Kind() == reflect.Pointer {
		cfg = cfg.Elem()
	}
	renderer{envPrefix: envPrefix(p.Name)}.table(&b, "inputs."+p.Name, cfg, 1)
	return b.String()
}

// renderer writes samples; envPrefix completes the names of env options.
type renderer struct {
	envPrefix string
}

// table writes the scalar keys of a struct first, then its sub-tables, as TOML
// requires.
func (r renderer) table(b *strings.Builder, path string, v reflect.Value, depth int) {
	fields := tomlFields(v.Type())
	for _, f := range fields {
		if !isTable(f.sf.Type) {
			r.scalar(b, f, v.FieldByIndex(f.sf.Index), depth)
		}
	}
	for _, f := range fields {
		if isTable(f.sf.Type) {
			r.subTable(b, join(path, f.key), f, v.FieldByIndex(f.sf.Index), depth)
		}
	}
}

func isTable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Struct
	}
	return false
}

func (r renderer) scalar(b *strings.Builder, f field, v reflect.Value, depth int) {
	r.doc(b, f, depth)
	if ex := f.sf.Tag.Get("example"); ex != "" && v.IsZero() {
		writeLines(b, depth, "# "+f.key+" = ", ex)
		return
	}
	writeLines(b, depth, "", tomlLine(f.key, v.Interface()))
}

func (r renderer) subTable(b *strings.Builder, path string, f field, v reflect.Value, depth int) {
	b.WriteString("\n")
	r.doc(b, f, depth)
	switch v.Kind() {
	case reflect.Struct:
		writeLines(b, depth, "", "["+path+"]")
		r.table(b, path, v, depth+1)
	case reflect.Map:
		if v.Len() == 0 {
			writeLines(b, depth, "# ", "["+path+"]")
			writeLines(b, depth+1, "# ", f.sf.Tag.Get("example"))
			return
		}
		writeLines(b, depth, "", "["+path+"]")
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			writeLines(b, depth+1, "", tomlLine(k.String(), v.MapIndex(k).Interface()))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			writeLines(b, depth, "# ", f.sf.Tag.Get("example"))
			return
		}
		for i := 0; i < v.Len(); i++ {
			writeLines(b, depth, "", "[["+path+"]]")
			r.table(b, path, v.Index(i), depth+1)
		}
	}
}

func (r renderer) doc(b *strings.Builder, f field, depth int) {
	doc := f.sf.Tag.Get("doc")
	if env := f.sf.Tag.Get("env"); env != "" {
		doc += " (env: " + r.envPrefix + env + ")"
	}
	if strings.TrimSpace(doc) != "" {
		writeLines(b, depth, "## ", strings.TrimSpace(doc))
	}
}

// writeLines writes each line of text, indented two spaces per depth, after prefix.
func writeLines(b *strings.Builder, depth int, prefix, text string) {
	if text == "" {
		return
	}
	for _, line := range strings.Split(text, "\n") {
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString(prefix)
		b.WriteString(line)
		b.WriteString("\n")
	}
}

// tomlLine renders `key = value` with the TOML encoder, so quoting is always right.
func tomlLine(key string, v any) string {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{key: v}); err != nil {
		return "# " + key + ": " + err.Error()
	}
	return strings.TrimSpace(buf.String())
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
