package servicetype

// WithPersisted returns current plus the provider entries of a persisted table
// (MarshalBinary output) that current does not define, so a custom type loaded
// in an earlier run stays known after a restart even when its type-provider
// file is no longer configured. Where current uses the same code or name, the
// current files win and the persisted entry is dropped.
func WithPersisted(current *Table, persisted []byte) (*Table, error) {
	var old Table
	if err := old.UnmarshalBinary(persisted); err != nil {
		return nil, err
	}
	byFile := map[string]*Provider{}
	var providers []*Provider
	provider := func(file string) *Provider {
		if p, ok := byFile[file]; ok {
			return p
		}
		p := &Provider{File: file}
		byFile[file] = p
		providers = append(providers, p)
		return p
	}
	for _, st := range current.Custom() {
		provider(st.Provider).Types = append(provider(st.Provider).Types, st)
	}
	for _, k := range current.CustomAnnotations() {
		provider(k.Provider).Annotations = append(provider(k.Provider).Annotations, k)
	}
	for _, st := range old.Custom() {
		_, codeUsed := current.Lookup(st.Code)
		_, nameUsed := current.ByName(st.Name)
		if !codeUsed && !nameUsed {
			provider(st.Provider).Types = append(provider(st.Provider).Types, st)
		}
	}
	for _, k := range old.CustomAnnotations() {
		if _, used := current.Annotation(k.Code); !used && !annotationNameUsed(current, k.Name) {
			provider(k.Provider).Annotations = append(provider(k.Provider).Annotations, k)
		}
	}
	return New(providers...)
}

func annotationNameUsed(t *Table, name string) bool {
	for _, k := range t.Annotations() {
		if k.Name == name {
			return true
		}
	}
	return false
}
