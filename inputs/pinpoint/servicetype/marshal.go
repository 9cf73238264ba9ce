package servicetype

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// persistFormat names the layout of MarshalBinary's output; a reader that
// meets another value refuses it instead of guessing.
const persistFormat = "apmkit-servicetype-table/1"

// persistedTable is the persisted form: only the provider entries. The
// built-in definitions are not stored, so a table restored by a newer apmkit
// gets that version's built-in fixes.
type persistedTable struct {
	Format         string          `json:"format"`
	ServiceTypes   []Type          `json:"serviceTypes"`
	AnnotationKeys []AnnotationKey `json:"annotationKeys"`
}

// MarshalBinary encodes the table's provider entries as JSON, for the
// input's cache: after a restart UnmarshalBinary restores them even when the
// provider files are not available yet.
func (t *Table) MarshalBinary() ([]byte, error) {
	r := t.resolved()
	p := persistedTable{
		Format:         persistFormat,
		ServiceTypes:   append([]Type{}, r.customTypes...),
		AnnotationKeys: append([]AnnotationKey{}, r.customAnnotations...),
	}
	return json.Marshal(p)
}

// UnmarshalBinary rebuilds a table from MarshalBinary's output: the current
// built-in definitions plus the persisted provider entries, checked by the
// same rules as provider files (an entry that now clashes with a built-in
// code is an error naming it). It must be called on a new Table, as
// encoding.BinaryUnmarshaler users do: tables are immutable once built.
func (t *Table) UnmarshalBinary(data []byte) error {
	if t.types != nil {
		return errors.New("servicetype: UnmarshalBinary on a table that is already built")
	}
	var p persistedTable
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("servicetype: decode persisted table: %w", err)
	}
	if p.Format != persistFormat {
		return fmt.Errorf("servicetype: persisted table has format %q, want %q", p.Format, persistFormat)
	}

	// Regroup the entries by the file they came from, in order of first
	// appearance, so errors and Provider fields read as they did.
	byFile := map[string]*Provider{}
	var providers []*Provider
	provider := func(file string) *Provider {
		if file == "" {
			file = "(persisted table)"
		}
		if pr, ok := byFile[file]; ok {
			return pr
		}
		pr := &Provider{File: file}
		byFile[file] = pr
		providers = append(providers, pr)
		return pr
	}
	var errs []error
	for i, st := range p.ServiceTypes {
		pr := provider(st.Provider)
		for _, err := range checkType(st) {
			errs = append(errs, &ProviderError{File: pr.File, Entry: entryName("serviceTypes", i, codeText(&st.Code), st.Name), Err: err})
		}
		pr.Types = append(pr.Types, st)
	}
	for i, k := range p.AnnotationKeys {
		pr := provider(k.Provider)
		for _, err := range checkAnnotation(k) {
			errs = append(errs, &ProviderError{File: pr.File, Entry: entryName("annotationKeys", i, codeText(&k.Code), k.Name), Err: err})
		}
		pr.Annotations = append(pr.Annotations, k)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	nt, err := New(providers...)
	if err != nil {
		return err
	}
	*t = *nt
	return nil
}
