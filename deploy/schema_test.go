package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/apmkit/apmkit/point"
)

// schemaTable is what one measurement's "Tags" and "Fields" tables of docs/SCHEMA.md list:
// tag names, and field names with their documented type. Names with a <placeholder> are
// patterns (annotation fields, configured tags) and kept apart.
type schemaTable struct {
	tags     map[string]bool
	fields   map[string]string // name -> "string", "int", "float"
	patterns []string
}

var measurementHeading = regexp.MustCompile("measurement `([^`]+)`")

// parseSchemaTables reads the tag and field tables of each "## ... measurement `name`"
// section: rows under a header whose first cell is "tag" or "field", first cell the names
// in backticks (comma-separated), second cell the type.
func parseSchemaTables(doc string) (map[string]*schemaTable, []error) {
	out := map[string]*schemaTable{}
	var errs []error
	for _, sec := range strings.Split(doc, "\n## ")[1:] {
		heading, body, _ := strings.Cut(sec, "\n")
		m := measurementHeading.FindStringSubmatch(heading)
		if m == nil {
			continue
		}
		tbl := &schemaTable{tags: map[string]bool{}, fields: map[string]string{}}
		out[m[1]] = tbl
		kind := "" // the table being read: "tag", "field" or "" (none, or another table)
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, "|") {
				kind = ""
				continue
			}
			cells := strings.Split(strings.Trim(line, "| "), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			switch {
			case cells[0] == "tag" || cells[0] == "field":
				kind = cells[0]
				continue
			case strings.HasPrefix(cells[0], "---") || kind == "":
				continue
			case len(cells) < 3:
				errs = append(errs, fmt.Errorf("%s: row %q: want name | type | meaning", m[1], line))
				continue
			}
			for _, name := range strings.Split(cells[0], ",") {
				name = strings.TrimSpace(name)
				if !strings.HasPrefix(name, "`") || !strings.HasSuffix(name, "`") {
					errs = append(errs, fmt.Errorf("%s: %s name %q is not in backticks", m[1], kind, name))
					continue
				}
				name = strings.Trim(name, "`")
				if strings.Contains(name, "<") {
					tbl.patterns = append(tbl.patterns, name)
					continue
				}
				if kind == "tag" {
					if cells[1] != "string" {
						errs = append(errs, fmt.Errorf("%s: tag %q has type %q; tags are strings", m[1], name, cells[1]))
					}
					tbl.tags[name] = true
				} else {
					tbl.fields[name] = cells[1]
				}
			}
		}
	}
	return out, errs
}

// docType is how docs/SCHEMA.md names a field kind.
func docType(k point.Kind) string {
	switch k {
	case point.KindInt, point.KindUint:
		return "int"
	case point.KindFloat:
		return "float"
	case point.KindString:
		return "string"
	case point.KindBool:
		return "bool"
	}
	return fmt.Sprintf("kind %d", k)
}

// checkWrittenDocumented reports every measurement, tag and field apmkit wrote that the
// schema's tables do not list (or list with another type).
func checkWrittenDocumented(written schema, tables map[string]*schemaTable) []error {
	var errs []error
	for _, name := range slices.Sorted(mapKeys(written)) {
		m, tbl := written[name], tables[name]
		if tbl == nil {
			errs = append(errs, fmt.Errorf("measurement %q is written but has no section in SCHEMA.md", name))
			continue
		}
		for _, tag := range slices.Sorted(mapKeys(m.tags)) {
			if !tbl.tags[tag] {
				errs = append(errs, fmt.Errorf("%s: tag %q is written but not in SCHEMA.md", name, tag))
			}
		}
		for _, f := range slices.Sorted(mapKeys(m.fields)) {
			typ, ok := tbl.fields[f]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: field %q is written but not in SCHEMA.md", name, f))
			case typ != docType(m.kinds[f]):
				errs = append(errs, fmt.Errorf("%s: field %q is written as %s, SCHEMA.md says %s", name, f, docType(m.kinds[f]), typ))
			}
		}
	}
	return errs
}

// codeLiterals returns the text of the non-test Go files that build points (the Pinpoint
// input and the span encoder), for names the recordings do not exercise.
func codeLiterals(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, root := range []string{"../inputs/pinpoint", "../span"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "pb" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				b.Write(data)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// checkDocumentedWritable reports every documented measurement the code does not declare,
// and every documented name that apmkit neither wrote for the recordings nor names as a
// string literal in the code that builds points.
func checkDocumentedWritable(written schema, tables map[string]*schemaTable, code string) []error {
	var errs []error
	for _, name := range slices.Sorted(mapKeys(tables)) {
		tbl := tables[name]
		if !slices.Contains(codeMeasurements, name) {
			errs = append(errs, fmt.Errorf("SCHEMA.md documents measurement %q; the code writes %v", name, codeMeasurements))
			continue
		}
		m := written[name]
		seen := func(what, key string) bool {
			if m == nil {
				return false
			}
			if what == "tag" {
				return m.tags[key]
			}
			return m.fields[key]
		}
		check := func(what, key string) {
			if !seen(what, key) && !strings.Contains(code, `"`+key+`"`) {
				errs = append(errs, fmt.Errorf("%s: SCHEMA.md documents %s %q, which the code never writes", name, what, key))
			}
		}
		for _, tag := range slices.Sorted(mapKeys(tbl.tags)) {
			check("tag", tag)
		}
		for _, f := range slices.Sorted(mapKeys(tbl.fields)) {
			check("field", f)
		}
	}
	for _, name := range codeMeasurements {
		if tables[name] == nil {
			errs = append(errs, fmt.Errorf("measurement %q has no section in SCHEMA.md", name))
		}
	}
	return errs
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestSchemaDocMatchesCode: docs/SCHEMA.md lists every tag and field apmkit writes for the
// recordings (replayed through the real input) and for a full stat message, with the type
// written, and documents nothing the code cannot write.
func TestSchemaDocMatchesCode(t *testing.T) {
	tables, errs := parseSchemaTables(outputSchemaDoc(t))
	for _, err := range errs {
		t.Error(err)
	}
	written := writtenSchema(t)
	for _, err := range checkWrittenDocumented(written, tables) {
		t.Error(err)
	}
	for _, err := range checkDocumentedWritable(written, tables, codeLiterals(t)) {
		t.Error(err)
	}
}

// TestSchemaDocMistakesAreCaught: each mistake, applied to the real doc, is reported.
func TestSchemaDocMistakesAreCaught(t *testing.T) {
	doc, written, code := outputSchemaDoc(t), writtenSchema(t), codeLiterals(t)
	for _, c := range []struct{ name, old, new, want string }{
		{"written field left out", "| `TotalThreadCount` | int | threads |\n", "", `pinpoint_jvm: field "TotalThreadCount" is written but not in SCHEMA.md`},
		{"written tag left out", "| `pool_id` | string |", "| `pool` | string |", `pinpoint_datasource: tag "pool_id" is written but not in SCHEMA.md`},
		{"wrong type", "| `duration` | int |", "| `duration` | float |", `field "duration" is written as int, SCHEMA.md says float`},
		{"documented name the code never writes", "| `uri` | string |", "| `uri`, `uri_template` | string |", `documents tag "uri_template", which the code never writes`},
		{"tag documented as a field", "| `http_url` | string |", "| `http_url_tag` | string |", `pinpoint: tag "http_url" is written but not in SCHEMA.md`},
		{"measurement renamed", "measurement `pinpoint_jvm`", "measurement `pinpoint-metric`", `documents measurement "pinpoint-metric"`},
	} {
		mutated := strings.Replace(doc, c.old, c.new, 1)
		if mutated == doc {
			t.Errorf("%s: %q is not in SCHEMA.md; update this case", c.name, c.old)
			continue
		}
		tables, all := parseSchemaTables(mutated)
		all = append(all, checkWrittenDocumented(written, tables)...)
		all = append(all, checkDocumentedWritable(written, tables, code)...)
		var msgs []string
		for _, err := range all {
			msgs = append(msgs, err.Error())
		}
		if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
			t.Errorf("%s: want an error containing %q, got %q", c.name, c.want, msgs)
		}
	}
}
