package servicetype

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadGoodProviders(t *testing.T) {
	// A directory stands for its *.yml/*.yaml files; README.txt is skipped
	// (it is not YAML, so reading it would fail the load).
	tb, err := Load([]string{"testdata/good"})
	if err != nil {
		t.Fatal(err)
	}
	const main, storage = "testdata/good/type-provider.yml", "testdata/good/storage.yaml"
	want := []Type{
		{Code: 1901, Name: "ACME_SERVER", Desc: "ACME_SERVER", RecordStatistics: true, Provider: main},
		{Code: 1902, Name: "ACME_SERVER_METHOD", Desc: "ACME_SERVER", Matcher: Matcher{Kind: MatchArgs}, Provider: main},
		{Code: 2901, Name: "ACME_DB", Desc: "ACME_DB", Terminal: true, IncludeDestinationID: true, Provider: storage},
		{Code: 2902, Name: "ACME_DB_QUERY", Desc: "ACME_DB", Terminal: true, RecordStatistics: true, IncludeDestinationID: true, Provider: storage},
		{Code: 7501, Name: "ACME_LIBRARY", Desc: "ACME_LIBRARY", Provider: storage},
		{Code: 8901, Name: "ACME_CACHE", Desc: "ACME_CACHE", Terminal: true, RecordStatistics: true, Provider: storage},
		{Code: 9901, Name: "ACME_RPC_CLIENT", Desc: "ACME_RPC", RecordStatistics: true, Matcher: Matcher{Kind: MatchExact, Code: 901}, Provider: main},
	}
	got := tb.Custom()
	if len(got) != len(want) {
		t.Fatalf("Custom() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Custom()[%d]:\n got %+v\nwant %+v", i, got[i], want[i])
		}
		if tb.Type(want[i].Code) != want[i] {
			t.Errorf("Type(%d) = %+v", want[i].Code, tb.Type(want[i].Code))
		}
	}
	categories := map[int32]string{1901: "web", 2902: "db", 7501: "custom", 8901: "cache", 9901: "http"}
	for code, src := range categories {
		if got := tb.Type(code).SourceType(); got != src {
			t.Errorf("Type(%d).SourceType() = %s, want %s", code, got, src)
		}
	}
	wantKeys := []AnnotationKey{
		{Code: 901, Name: "acme.rpc.url", ViewInRecordSet: true, Provider: main},
		{Code: 902, Name: "acme.internal", Provider: main},
	}
	gotKeys := tb.CustomAnnotations()
	if len(gotKeys) != 2 || gotKeys[0] != wantKeys[0] || gotKeys[1] != wantKeys[1] {
		t.Errorf("CustomAnnotations() = %+v, want %+v", gotKeys, wantKeys)
	}
	if k, ok := tb.Annotation(901); !ok || k != wantKeys[0] {
		t.Errorf("Annotation(901) = %+v, %v", k, ok)
	}
	// The built-in definitions are still there, and Builtin() is untouched.
	if tb.Type(1010).Name != "TOMCAT" || tb.Type(9401).Name != "GO_HTTP_CLIENT" {
		t.Error("built-in types lost")
	}
	if _, ok := Builtin().Lookup(1901); ok {
		t.Error("loading a provider changed the built-in table")
	}
	// Custom returns a copy: changing it changes nothing.
	got[0].Name = "CHANGED"
	if tb.Custom()[0].Name != "ACME_SERVER" {
		t.Error("Custom() exposes the table's slice")
	}
}

func TestLoadFilesAndEmpty(t *testing.T) {
	// Files named one by one, the same file twice (read once), and an empty
	// file (declares nothing) load fine.
	tb, err := Load([]string{"testdata/good/storage.yaml", "testdata/empty.yml", "testdata/good/storage.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tb.Custom()); n != 4 {
		t.Errorf("%d custom types, want the 4 of storage.yaml", n)
	}
	tb, err = Load(nil)
	if err != nil || len(tb.Custom()) != 0 || tb.Type(1010).Name != "TOMCAT" {
		t.Errorf("Load(nil) = %v, %v", tb, err)
	}
}

// TestLoadErrors asserts the complete error text for each broken provider:
// the text is the user interface of this feature, so it must say which file,
// which line, which entry and what is allowed.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name  string
		paths []string
		kind  error
		want  []string
	}{
		{
			name: "code out of range", paths: []string{"testdata/bad_range.yml"}, kind: ErrCodeOutOfRange,
			want: []string{
				`type provider testdata/bad_range.yml:2: serviceTypes[0] (code 1500, name "ACME_PHP"): code 1500 is outside the ranges open to type providers: 1900-1999 (server), 2900-2999 (database), 7500-7999 (library), 8900-8999 (cache), 9900-9999 (rpc)`,
				`type provider testdata/bad_range.yml:4: serviceTypes[1] (code 5000, name "ACME_METHOD"): code 5000 is outside the ranges open to type providers: 1900-1999 (server), 2900-2999 (database), 7500-7999 (library), 8900-8999 (cache), 9900-9999 (rpc)`,
				`type provider testdata/bad_range.yml:7: annotationKeys[0] (code 40, name "acme.url"): code 40 is outside the range open to type providers: 900-999 (custom)`,
			},
		},
		{
			name: "duplicates within a file and with built-ins", paths: []string{"testdata/bad_duplicate.yml"}, kind: ErrDuplicateCode,
			want: []string{
				`type provider testdata/bad_duplicate.yml:4: serviceTypes[1] (code 1950, name "ACME_TWO"): code 1950 is already used by serviceTypes[0] "ACME_ONE" in testdata/bad_duplicate.yml:2`,
				`type provider testdata/bad_duplicate.yml:6: serviceTypes[2] (code 1951, name "ACME_ONE"): name "ACME_ONE" is already used by serviceTypes[0] "ACME_ONE" in testdata/bad_duplicate.yml:2`,
				`type provider testdata/bad_duplicate.yml:8: serviceTypes[3] (code 1952, name "TOMCAT"): name "TOMCAT" is already used by the built-in service type 1010 TOMCAT`,
				`type provider testdata/bad_duplicate.yml:10: serviceTypes[4] (code 9900, name "ACME_PYTHON"): code 9900 is already used by the built-in service type 9900 PYTHON_REMOTE_METHOD`,
				`type provider testdata/bad_duplicate.yml:15: annotationKeys[1] (code 951, name "http.url"): name "http.url" is already used by the built-in annotation key 40 http.url`,
			},
		},
		{
			name: "duplicates across files", paths: []string{"testdata/dup"}, kind: ErrDuplicateCode,
			want: []string{
				`type provider testdata/dup/b.yml:4: serviceTypes[1] (code 1960, name "ACME_B2"): code 1960 is already used by serviceTypes[0] "ACME_A" in testdata/dup/a.yml:2`,
				`type provider testdata/dup/b.yml:7: annotationKeys[0] (code 960, name "acme.b"): code 960 is already used by annotationKeys[0] "acme.a" in testdata/dup/a.yml:5`,
			},
		},
		{
			name: "unknown keys", paths: []string{"testdata/bad_unknown_key.yml"}, kind: ErrSyntax,
			want: []string{
				`type provider testdata/bad_unknown_key.yml:4: serviceTypes[0] (code 1970, name "ACME_SERVER"): unknown key "descr" in a service type (allowed: code, name, desc, property, matcher)`,
				`type provider testdata/bad_unknown_key.yml:6: serviceTypes[0] (code 1970, name "ACME_SERVER"): unknown key "terminl" in a service type's property (allowed: terminal, queue, recordStatistics, includeDestinationId, alias)`,
				`type provider testdata/bad_unknown_key.yml:7: unknown key "annotationKey" at the top level (allowed: serviceTypes, annotationKeys)`,
			},
		},
		{
			name: "bad YAML", paths: []string{"testdata/bad_yaml.yml"}, kind: ErrSyntax,
			want: []string{
				`type provider testdata/bad_yaml.yml:3: invalid YAML: found unexpected end of stream`,
			},
		},
		{
			name: "values of the wrong type", paths: []string{"testdata/bad_value.yml"}, kind: ErrSyntax,
			want: []string{
				"type provider testdata/bad_value.yml:2: serviceTypes[0] (code nineteen-ninety, name \"ACME_SERVER\"): cannot unmarshal !!str `ninetee...` into int32",
				"type provider testdata/bad_value.yml:5: serviceTypes[0] (code nineteen-ninety, name \"ACME_SERVER\"): cannot unmarshal !!str `maybe` into bool",
			},
		},
		{
			name: "missing fields and bad matchers", paths: []string{"testdata/bad_entries.yml"}, kind: ErrMissingField,
			want: []string{
				`type provider testdata/bad_entries.yml:2: serviceTypes[0] (name "ACME_NO_CODE"): code is missing`,
				`type provider testdata/bad_entries.yml:3: serviceTypes[1] (code 1991): name is missing or empty`,
				`type provider testdata/bad_entries.yml:5: serviceTypes[2] (code 1992, name "ACME_EXACT"): matcher type exact needs the code of the annotation key to show`,
				`type provider testdata/bad_entries.yml:9: serviceTypes[3] (code 1993, name "ACME_REGEX"): matcher type "regex" is not one of args, exact, none`,
				`type provider testdata/bad_entries.yml:13: serviceTypes[4] (code 1994, name "ACME_ARGS"): matcher code is only used with type exact`,
				`type provider testdata/bad_entries.yml:19: annotationKeys[0] (code 990): name is missing or empty`,
			},
		},
		{
			name: "two YAML documents", paths: []string{"testdata/two_documents.yml"}, kind: ErrSyntax,
			want: []string{
				`type provider testdata/two_documents.yml:4: a second YAML document starts here; put all entries in one document`,
			},
		},
		{
			// Errors of several files are all reported, and a good file
			// beside them does not make the load succeed.
			name: "several bad files", paths: []string{"testdata/good", "testdata/bad_yaml.yml", "testdata/two_documents.yml"}, kind: ErrSyntax,
			want: []string{
				`type provider testdata/bad_yaml.yml:3: invalid YAML: found unexpected end of stream`,
				`type provider testdata/two_documents.yml:4: a second YAML document starts here; put all entries in one document`,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, err := Load(c.paths)
			if err == nil {
				t.Fatalf("Load(%v) succeeded with %d custom types", c.paths, len(tb.Custom()))
			}
			if tb != nil {
				t.Error("a table was returned with the error")
			}
			if got, want := err.Error(), strings.Join(c.want, "\n"); got != want {
				t.Errorf("error text:\n got: %s\nwant: %s", got, want)
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("errors.Is(err, %v) = false", c.kind)
			}
			var pe *ProviderError
			if !errors.As(err, &pe) || pe.File == "" || pe.Line == 0 {
				t.Errorf("error is not a located *ProviderError: %#v", pe)
			}
		})
	}
}

func TestLoadMissingPath(t *testing.T) {
	_, err := Load([]string{"testdata/good", "testdata/no-such-provider.yml"})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "testdata/no-such-provider.yml") {
		t.Errorf("err = %v, want a not-exist error naming the file", err)
	}
}

// TestNewFromCode covers providers built in code: the same rules apply.
func TestNewFromCode(t *testing.T) {
	tb, err := New(&Provider{File: "code", Types: []Type{{Code: 1990, Name: "CODE_TYPE"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.Type(1990); got.Desc != "CODE_TYPE" || got.Provider != "code" {
		t.Errorf("Type(1990) = %+v: desc should default to the name", got)
	}
	_, err = New(&Provider{File: "code", Types: []Type{{Code: 1010, Name: "MINE"}}})
	if want := `type provider code: serviceTypes[0] (code 1010, name "MINE"): code 1010 is already used by the built-in service type 1010 TOMCAT`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	orig, err := Load([]string{"testdata/good"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := orig.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var restored Table
	if err := restored.UnmarshalBinary(data); err != nil {
		t.Fatalf("UnmarshalBinary: %v\n%s", err, data)
	}
	a, b := orig.Custom(), restored.Custom()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("custom types: %d before, %d after", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("custom type %d: %+v before, %+v after", i, a[i], b[i])
		}
	}
	ka, kb := orig.CustomAnnotations(), restored.CustomAnnotations()
	if len(ka) != len(kb) || len(ka) != 2 || ka[0] != kb[0] || ka[1] != kb[1] {
		t.Errorf("custom annotation keys: %+v before, %+v after", ka, kb)
	}
	for _, code := range []int32{1010, 1901, 9901, 7777} {
		if orig.Type(code) != restored.Type(code) {
			t.Errorf("Type(%d): %+v before, %+v after", code, orig.Type(code), restored.Type(code))
		}
	}
	// Marshalling the restored table gives the same bytes: nothing drifts
	// over repeated restarts.
	again, err := restored.MarshalBinary()
	if err != nil || string(again) != string(data) {
		t.Errorf("second marshal differs:\n%s\n%s", data, again)
	}
	// A built table is immutable.
	if err := restored.UnmarshalBinary(data); err == nil {
		t.Error("UnmarshalBinary over a built table succeeded")
	}
}

func TestMarshalBuiltin(t *testing.T) {
	data, err := Builtin().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"format":"apmkit-servicetype-table/1","serviceTypes":[],"annotationKeys":[]}`; string(data) != want {
		t.Errorf("MarshalBinary() = %s, want %s", data, want)
	}
	var tb Table
	if err := tb.UnmarshalBinary(data); err != nil || tb.Type(1010).Name != "TOMCAT" || len(tb.Custom()) != 0 {
		t.Errorf("restoring the built-in table: %v", err)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	entry := func(v map[string]any) string {
		b, _ := json.Marshal(map[string]any{"format": "apmkit-servicetype-table/1", "serviceTypes": []any{v}, "annotationKeys": []any{}})
		return string(b)
	}
	cases := []struct {
		name, data, want string
	}{
		{"not JSON", `{`, "servicetype: decode persisted table: unexpected EOF"},
		{"other format", `{"format":"x/9","serviceTypes":[],"annotationKeys":[]}`, `servicetype: persisted table has format "x/9", want "apmkit-servicetype-table/1"`},
		{"unknown field", `{"format":"apmkit-servicetype-table/1","serviceTypes":[],"annotationKeys":[],"extra":1}`, `servicetype: decode persisted table: json: unknown field "extra"`},
		{"out of range", entry(map[string]any{"code": 1500, "name": "X", "desc": "X", "matcher": map[string]any{"type": "none"}, "provider": "a.yml"}),
			`type provider a.yml: serviceTypes[0] (code 1500, name "X"): code 1500 is outside the ranges open to type providers: 1900-1999 (server), 2900-2999 (database), 7500-7999 (library), 8900-8999 (cache), 9900-9999 (rpc)`},
		// A code that a newer apmkit made built-in clashes on restore.
		{"clash with built-in", entry(map[string]any{"code": 9900, "name": "X", "desc": "X", "matcher": map[string]any{"type": "none"}, "provider": "a.yml"}),
			`type provider a.yml: serviceTypes[0] (code 9900, name "X"): code 9900 is already used by the built-in service type 9900 PYTHON_REMOTE_METHOD`},
		{"bad matcher", entry(map[string]any{"code": 1901, "name": "X", "desc": "X", "matcher": map[string]any{"type": "regex"}}),
			`servicetype: decode persisted table: matcher type "regex" is not one of args, exact, none`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tb Table
			err := tb.UnmarshalBinary([]byte(c.data))
			if err == nil || err.Error() != c.want {
				t.Errorf("err = %v\nwant %s", err, c.want)
			}
			if tb.types != nil {
				t.Error("a failed UnmarshalBinary left a half-built table")
			}
		})
	}
}

// TestProviderFileInTempDir loads a provider written at run time, so the
// loader is not only exercised on checked-in files.
func TestProviderFileInTempDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "type-provider.yml")
	yml := "serviceTypes:\n  - code: 9999\n    name: 'EDGE_RPC'\n    property:\n      queue: true\n"
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	tb, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	want := Type{Code: 9999, Name: "EDGE_RPC", Desc: "EDGE_RPC", Queue: true, Provider: file}
	if got := tb.Type(9999); got != want {
		t.Errorf("Type(9999) = %+v, want %+v", got, want)
	}
}
