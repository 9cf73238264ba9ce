package servicetype

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// providerSeeds returns every type-provider file of testdata, good and bad.
func providerSeeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.y*ml")
	if err != nil {
		tb.Fatal(err)
	}
	more, err := filepath.Glob("testdata/*/*.y*ml")
	if err != nil {
		tb.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, file := range append(files, more...) {
		data, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		seeds[file] = data
	}
	if len(seeds) == 0 {
		tb.Fatal("no type-provider files in testdata")
	}
	return seeds
}

// FuzzParseProvider: whatever a type-provider.yml holds, parsing never panics, and what
// parses builds a table (or a clash error) whose persisted form restores the same table.
func FuzzParseProvider(f *testing.F) {
	for _, data := range providerSeeds(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProvider("type-provider.yml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			return
		}
		tab, err := New(p)
		if err != nil {
			return // clashes with a built-in: reported, not a panic
		}
		checkPersisted(t, tab)
	})
}

// FuzzPersistedTable: whatever the cache hands back as the persisted serviceType table,
// restoring it (alone, and merged with the current table as the input does at Start)
// never panics, and what restores re-encodes to a stable form.
func FuzzPersistedTable(f *testing.F) {
	for file, data := range providerSeeds(f) {
		p, err := ParseProvider(file, data)
		if err != nil {
			continue
		}
		tab, err := New(p)
		if err != nil {
			continue
		}
		b, err := tab.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	b, err := Builtin().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tab Table
		if err := tab.UnmarshalBinary(data); err == nil {
			checkPersisted(t, &tab)
		}
		if merged, err := WithPersisted(Builtin(), data); err == nil {
			checkPersisted(t, merged)
		}
	})
}

// checkPersisted: the table's persisted form restores a table that persists the same way.
func checkPersisted(t *testing.T, tab *Table) {
	t.Helper()
	once, err := tab.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back Table
	if err := back.UnmarshalBinary(once); err != nil {
		t.Fatalf("persisted table does not restore: %v\n%s", err, once)
	}
	twice, err := back.MarshalBinary()
	if err != nil || !bytes.Equal(once, twice) {
		t.Fatalf("persisted form not stable (%v):\n%s\n%s", err, once, twice)
	}
	for _, st := range back.Types() {
		if got := back.Type(st.Code); got.Code != st.Code {
			t.Fatalf("type %d looks up as %d", st.Code, got.Code)
		}
	}
}
