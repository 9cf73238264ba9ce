package servicetype

// Users' plugin type providers. A Pinpoint plugin declares its codes in a
// type-provider.yml (META-INF/pinpoint/type-provider.yml in the plugin jar):
//
//	serviceTypes:
//	  - code: 1901
//	    name: 'MY_SERVER'
//	    desc: 'MY_SERVER'            # optional, defaults to name
//	    property:                    # optional, all false by default
//	      terminal: false
//	      queue: false
//	      recordStatistics: true
//	      includeDestinationId: false
//	      alias: false
//	    matcher:                     # optional: which annotation is the argument
//	      type: 'exact'              # args | exact | none
//	      code: 901                  # exact only
//	annotationKeys:
//	  - code: 901
//	    name: 'my.key'
//	    property:
//	      viewInRecordSet: true
//
// Without the same file apmkit would show that plugin's spans as
// UNKNOWN_<code>. Codes must come from the ranges Pinpoint keeps free for
// plugins, so a provider can never redefine what a built-in code means.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Errors a provider can fail with; test with errors.Is. Every error Load,
// ParseProvider, New and UnmarshalBinary return for a bad entry is a
// *ProviderError wrapping one of these.
var (
	ErrSyntax         = errors.New("invalid type-provider file")
	ErrMissingField   = errors.New("missing field")
	ErrCodeOutOfRange = errors.New("code outside the ranges open to type providers")
	ErrDuplicateCode  = errors.New("duplicate code")
	ErrDuplicateName  = errors.New("duplicate name")
	ErrBadMatcher     = errors.New("invalid matcher")
)

// ruleError is a message for users that still matches its sentinel with
// errors.Is, so the text need not repeat the sentinel's words.
type ruleError struct {
	kind error
	msg  string
}

func (e *ruleError) Error() string        { return e.msg }
func (e *ruleError) Is(target error) bool { return target == e.kind }

func rule(kind error, format string, args ...any) error {
	return &ruleError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// ProviderError locates a problem in a type-provider file.
type ProviderError struct {
	File  string // the file as it was named
	Line  int    // 1-based; 0 when unknown (e.g. a restored table)
	Entry string // e.g. `serviceTypes[2] (code 1500, name "MY_SERVER")`; empty for whole-file problems
	Err   error
}

func (e *ProviderError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Entry != "" {
		return fmt.Sprintf("type provider %s: %s: %v", loc, e.Entry, e.Err)
	}
	return fmt.Sprintf("type provider %s: %v", loc, e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }

type codeRange struct {
	min, max int32
	what     string
}

// typeRanges are the service type codes Pinpoint leaves to plugins
// ("sandbox" ranges in its ServiceType documentation). A function, not a
// variable, so the ranges cannot be changed at run time.
func typeRanges() []codeRange {
	return []codeRange{
		{1900, 1999, "server"},
		{2900, 2999, "database"},
		{7500, 7999, "library"},
		{8900, 8999, "cache"},
		{9900, 9999, "rpc"},
	}
}

// annotationRanges are the annotation key codes Pinpoint leaves to plugins.
func annotationRanges() []codeRange {
	return []codeRange{{900, 999, "custom"}}
}

func inRanges(code int32, rs []codeRange) bool {
	for _, r := range rs {
		if code >= r.min && code <= r.max {
			return true
		}
	}
	return false
}

func describeRanges(rs []codeRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d-%d (%s)", r.min, r.max, r.what)
	}
	return strings.Join(parts, ", ")
}

// The YAML shapes. Decoding uses KnownFields, so a misspelt key is an error
// instead of a silently ignored property.
type yamlFile struct {
	ServiceTypes   []yamlServiceType   `yaml:"serviceTypes"`
	AnnotationKeys []yamlAnnotationKey `yaml:"annotationKeys"`
}

type yamlServiceType struct {
	Code     *int32           `yaml:"code"` // a pointer, to tell "missing" from 0
	Name     string           `yaml:"name"`
	Desc     string           `yaml:"desc"`
	Property yamlTypeProperty `yaml:"property"`
	Matcher  *yamlMatcher     `yaml:"matcher"`
}

type yamlTypeProperty struct {
	Terminal             bool `yaml:"terminal"`
	Queue                bool `yaml:"queue"`
	RecordStatistics     bool `yaml:"recordStatistics"`
	IncludeDestinationID bool `yaml:"includeDestinationId"`
	Alias                bool `yaml:"alias"`
}

type yamlMatcher struct {
	Type string `yaml:"type"`
	Code *int32 `yaml:"code"`
}

type yamlAnnotationKey struct {
	Code     *int32                 `yaml:"code"`
	Name     string                 `yaml:"name"`
	Property yamlAnnotationProperty `yaml:"property"`
}

type yamlAnnotationProperty struct {
	ViewInRecordSet bool `yaml:"viewInRecordSet"`
}

// yamlKeys describes each YAML shape for unknown-key errors: yaml.v3 names
// the Go type, which means nothing to a user.
func yamlKeys(goType string) (where, allowed string, ok bool) {
	switch goType {
	case "yamlFile":
		return "at the top level", "serviceTypes, annotationKeys", true
	case "yamlServiceType":
		return "in a service type", "code, name, desc, property, matcher", true
	case "yamlTypeProperty":
		return "in a service type's property", "terminal, queue, recordStatistics, includeDestinationId, alias", true
	case "yamlMatcher":
		return "in a matcher", "type, code", true
	case "yamlAnnotationKey":
		return "in an annotation key", "code, name, property", true
	case "yamlAnnotationProperty":
		return "in an annotation key's property", "viewInRecordSet", true
	}
	return "", "", false
}

// splitLine separates yaml.v3's "line N: " prefix from a message.
func splitLine(msg string) (int, string) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, text, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, msg
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, msg
	}
	return n, text
}

// unknownKey recognises yaml.v3's KnownFields message
// "field X not found in type servicetype.T".
func unknownKey(text string) (key, goType string, ok bool) {
	rest, ok := strings.CutPrefix(text, "field ")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, " not found in type servicetype.")
}

// yamlError turns a yaml.v3 error into ProviderErrors with lines and words a
// user can act on.
func yamlError(file string, err error, spans []entrySpan) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			line, text := splitLine(msg)
			if key, goType, ok := unknownKey(text); ok {
				if where, allowed, ok := yamlKeys(goType); ok {
					text = fmt.Sprintf("unknown key %q %s (allowed: %s)", key, where, allowed)
				}
			}
			pe := &ProviderError{File: file, Line: line, Err: rule(ErrSyntax, "%s", text)}
			if s, ok := entryAt(spans, line); ok {
				pe.Entry = s.String()
			}
			errs = append(errs, pe)
		}
		return errors.Join(errs...)
	}
	line, text := splitLine(strings.TrimPrefix(err.Error(), "yaml: "))
	return &ProviderError{File: file, Line: line, Err: rule(ErrSyntax, "invalid YAML: %s", text)}
}

// entrySpan is where one list entry sits in a provider file, so errors
// can name it even when the typed decode (which loses positions) failed.
type entrySpan struct {
	list        string // "serviceTypes" or "annotationKeys"
	index       int
	first, last int    // lines; last ends before the next entry or top-level key
	code, name  string // as written, for messages
}

func (s entrySpan) String() string { return entryName(s.list, s.index, s.code, s.name) }

// fileEntries maps the list entries of a provider file to their lines using
// the YAML node tree. Unparsable YAML yields none.
func fileEntries(data []byte) []entrySpan {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	var spans []entrySpan
	var starts []int // first lines of every entry and top-level key
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, v := m.Content[i], m.Content[i+1]
		starts = append(starts, key.Line)
		if v.Kind != yaml.SequenceNode {
			continue
		}
		for j, c := range v.Content {
			s := entrySpan{list: key.Value, index: j, first: c.Line}
			if c.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(c.Content); k += 2 {
					switch c.Content[k].Value {
					case "code":
						s.code = c.Content[k+1].Value
					case "name":
						s.name = c.Content[k+1].Value
					}
				}
			}
			spans = append(spans, s)
			starts = append(starts, c.Line)
		}
	}
	sort.Ints(starts)
	for i := range spans {
		spans[i].last = math.MaxInt
		if k := sort.SearchInts(starts, spans[i].first+1); k < len(starts) {
			spans[i].last = starts[k] - 1
		}
	}
	return spans
}

// entryAt returns the entry that contains line.
func entryAt(spans []entrySpan, line int) (entrySpan, bool) {
	for _, s := range spans {
		if line >= s.first && line <= s.last {
			return s, true
		}
	}
	return entrySpan{}, false
}

// entryLine returns the first line of list[i], 0 when unknown.
func entryLine(spans []entrySpan, list string, i int) int {
	for _, s := range spans {
		if s.list == list && s.index == i {
			return s.first
		}
	}
	return 0
}

func lineOf(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}

// entryName names a list entry in messages; code and name are as written
// and left out when empty.
func entryName(list string, i int, code, name string) string {
	var parts []string
	if code != "" {
		parts = append(parts, "code "+code)
	}
	if name != "" {
		parts = append(parts, fmt.Sprintf("name %q", name))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%d] (%s)", list, i, strings.Join(parts, ", "))
}

func codeText(code *int32) string {
	if code == nil {
		return ""
	}
	return strconv.FormatInt(int64(*code), 10)
}

func parseMatcherKind(s string) (MatcherKind, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none":
		return MatchNone, true
	case "args":
		return MatchArgs, true
	case "exact":
		return MatchExact, true
	}
	return 0, false
}

// checkType applies the rules every provider service type must meet; it
// serves both parsed files and restored tables.
func checkType(st Type) []error {
	var errs []error
	if !inRanges(st.Code, typeRanges()) {
		errs = append(errs, rule(ErrCodeOutOfRange, "code %d is outside the ranges open to type providers: %s",
			st.Code, describeRanges(typeRanges())))
	}
	if st.Name == "" {
		errs = append(errs, rule(ErrMissingField, "name is missing or empty"))
	}
	switch st.Matcher.Kind {
	case MatchNone, MatchArgs:
		if st.Matcher.Code != 0 {
			errs = append(errs, rule(ErrBadMatcher, "matcher code is only used with type exact"))
		}
	case MatchExact:
	default:
		errs = append(errs, rule(ErrBadMatcher, "matcher type %d is not one of args, exact, none", st.Matcher.Kind))
	}
	return errs
}

func checkAnnotation(k AnnotationKey) []error {
	var errs []error
	if !inRanges(k.Code, annotationRanges()) {
		errs = append(errs, rule(ErrCodeOutOfRange, "code %d is outside the range open to type providers: %s",
			k.Code, describeRanges(annotationRanges())))
	}
	if k.Name == "" {
		errs = append(errs, rule(ErrMissingField, "name is missing or empty"))
	}
	return errs
}

// Provider is one parsed type-provider file. Its entries are checked one by
// one; clashes with other files and the built-in table are New's job.
type Provider struct {
	File        string
	Types       []Type
	Annotations []AnnotationKey
	// Lines of the entries, parallel to Types and Annotations; 0 = unknown.
	typeLines       []int
	annotationLines []int
}

// ParseProvider parses and checks one type-provider file. file names it in
// errors; data is its content. Every problem is reported, not just the first.
func ParseProvider(file string, data []byte) (*Provider, error) {
	var doc yamlFile
	spans := fileEntries(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		// An empty file declares nothing; that is not an error (an empty
		// mounted ConfigMap key looks like this).
	case err != nil:
		return nil, yamlError(file, err, spans)
	default:
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			if err != nil {
				return nil, yamlError(file, err, spans)
			}
			return nil, &ProviderError{File: file, Line: extra.Line,
				Err: rule(ErrSyntax, "a second YAML document starts here; put all entries in one document")}
		}
	}

	p := &Provider{File: file}
	var errs []error
	for i, e := range doc.ServiceTypes {
		line := entryLine(spans, "serviceTypes", i)
		entry := entryName("serviceTypes", i, codeText(e.Code), e.Name)
		var entryErrs []error
		st := Type{
			Name:                 strings.TrimSpace(e.Name),
			Desc:                 strings.TrimSpace(e.Desc),
			Terminal:             e.Property.Terminal,
			Queue:                e.Property.Queue,
			RecordStatistics:     e.Property.RecordStatistics,
			IncludeDestinationID: e.Property.IncludeDestinationID,
			Alias:                e.Property.Alias,
			Provider:             file,
		}
		if st.Desc == "" {
			st.Desc = st.Name // Pinpoint's default
		}
		if m := e.Matcher; m != nil {
			kind, ok := parseMatcherKind(m.Type)
			switch {
			case !ok:
				entryErrs = append(entryErrs, rule(ErrBadMatcher, "matcher type %q is not one of args, exact, none", m.Type))
			case kind == MatchExact && m.Code == nil:
				entryErrs = append(entryErrs, rule(ErrBadMatcher, "matcher type exact needs the code of the annotation key to show"))
			case kind == MatchExact:
				st.Matcher = Matcher{Kind: kind, Code: *m.Code}
			case m.Code != nil:
				entryErrs = append(entryErrs, rule(ErrBadMatcher, "matcher code is only used with type exact"))
			default:
				st.Matcher = Matcher{Kind: kind}
			}
		}
		if e.Code == nil {
			entryErrs = append(entryErrs, rule(ErrMissingField, "code is missing"))
			if st.Name == "" {
				entryErrs = append(entryErrs, rule(ErrMissingField, "name is missing or empty"))
			}
		} else {
			st.Code = *e.Code
			entryErrs = append(entryErrs, checkType(st)...)
		}
		for _, err := range entryErrs {
			errs = append(errs, &ProviderError{File: file, Line: line, Entry: entry, Err: err})
		}
		p.Types = append(p.Types, st)
		p.typeLines = append(p.typeLines, line)
	}
	for i, e := range doc.AnnotationKeys {
		line := entryLine(spans, "annotationKeys", i)
		entry := entryName("annotationKeys", i, codeText(e.Code), e.Name)
		k := AnnotationKey{Name: strings.TrimSpace(e.Name), ViewInRecordSet: e.Property.ViewInRecordSet, Provider: file}
		var entryErrs []error
		if e.Code == nil {
			entryErrs = append(entryErrs, rule(ErrMissingField, "code is missing"))
			if k.Name == "" {
				entryErrs = append(entryErrs, rule(ErrMissingField, "name is missing or empty"))
			}
		} else {
			k.Code = *e.Code
			entryErrs = checkAnnotation(k)
		}
		for _, err := range entryErrs {
			errs = append(errs, &ProviderError{File: file, Line: line, Entry: entry, Err: err})
		}
		p.Annotations = append(p.Annotations, k)
		p.annotationLines = append(p.annotationLines, line)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// LoadProvider reads and parses one type-provider file.
func LoadProvider(file string) (*Provider, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("servicetype: %w", err)
	}
	return ParseProvider(file, data)
}

// expandPaths turns the configured paths into files: a directory stands for
// its *.yml and *.yaml files in name order (e.g. a mounted ConfigMap), a file
// for itself. A path named twice is read once.
func expandPaths(paths []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	add := func(f string) {
		if c := filepath.Clean(f); !seen[c] {
			seen[c] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("servicetype: type provider: %w", err)
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("servicetype: type provider: %w", err)
		}
		var names []string
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			// Kubernetes mounts ConfigMap keys through ..data symlinks;
			// hidden entries are its bookkeeping, not providers.
			if strings.HasPrefix(e.Name(), ".") || (ext != ".yml" && ext != ".yaml") || e.Type()&fs.ModeType&^fs.ModeSymlink != 0 {
				continue
			}
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			add(filepath.Join(p, n))
		}
	}
	return files, nil
}

// Load builds a table from the built-in definitions and the type-provider
// files (or directories of them) at paths. Every problem in every file is
// reported; a table is returned only when there are none, so a typo never
// half-applies.
func Load(paths []string) (*Table, error) {
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	var providers []*Provider
	var errs []error
	for _, f := range files {
		p, err := LoadProvider(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		providers = append(providers, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return New(providers...)
}

// New builds a table from the built-in definitions plus the providers' entries,
// in order. A code or name that is already taken - by a built-in definition,
// an earlier file or an earlier entry of the same file - is an error naming
// both, because Pinpoint gives every code and name one meaning.
func New(providers ...*Provider) (*Table, error) {
	b := Builtin()
	t := &Table{
		types:           make(map[int32]Type, len(b.types)),
		typeNames:       make(map[string]int32, len(b.typeNames)),
		annotations:     make(map[int32]AnnotationKey, len(b.annotations)),
		annotationNames: make(map[string]int32, len(b.annotationNames)),
	}
	for c, st := range b.types {
		t.types[c] = st
		t.typeNames[st.Name] = c
	}
	for c, k := range b.annotations {
		t.annotations[c] = k
		t.annotationNames[k.Name] = c
	}

	// origin says where a custom code was defined, for clash messages.
	typeOrigin := map[int32]string{}
	annotationOrigin := map[int32]string{}
	describeType := func(code int32) string {
		if o, ok := typeOrigin[code]; ok {
			return o
		}
		return fmt.Sprintf("the built-in service type %d %s", code, t.types[code].Name)
	}
	describeAnnotation := func(code int32) string {
		if o, ok := annotationOrigin[code]; ok {
			return o
		}
		return fmt.Sprintf("the built-in annotation key %d %s", code, t.annotations[code].Name)
	}
	at := func(file string, line int) string {
		if line > 0 {
			return file + ":" + strconv.Itoa(line)
		}
		return file
	}

	var errs []error
	for _, p := range providers {
		if p == nil {
			continue
		}
		for i, st := range p.Types {
			line := lineOf(p.typeLines, i)
			entry := entryName("serviceTypes", i, codeText(&st.Code), st.Name)
			fail := func(err error) {
				errs = append(errs, &ProviderError{File: p.File, Line: line, Entry: entry, Err: err})
			}
			if _, dup := t.types[st.Code]; dup {
				fail(rule(ErrDuplicateCode, "code %d is already used by %s", st.Code, describeType(st.Code)))
				continue
			}
			if code, dup := t.typeNames[st.Name]; dup {
				fail(rule(ErrDuplicateName, "name %q is already used by %s", st.Name, describeType(code)))
				continue
			}
			st.Provider = p.File
			if st.Desc == "" {
				st.Desc = st.Name // Pinpoint's default, also for providers built in code
			}
			t.types[st.Code] = st
			t.typeNames[st.Name] = st.Code
			t.customTypes = append(t.customTypes, st)
			typeOrigin[st.Code] = fmt.Sprintf("serviceTypes[%d] %q in %s", i, st.Name, at(p.File, line))
		}
		for i, k := range p.Annotations {
			line := lineOf(p.annotationLines, i)
			entry := entryName("annotationKeys", i, codeText(&k.Code), k.Name)
			fail := func(err error) {
				errs = append(errs, &ProviderError{File: p.File, Line: line, Entry: entry, Err: err})
			}
			if _, dup := t.annotations[k.Code]; dup {
				fail(rule(ErrDuplicateCode, "code %d is already used by %s", k.Code, describeAnnotation(k.Code)))
				continue
			}
			// Annotation names become output field names, so they must
			// be unique too.
			if code, dup := t.annotationNames[k.Name]; dup {
				fail(rule(ErrDuplicateName, "name %q is already used by %s", k.Name, describeAnnotation(code)))
				continue
			}
			k.Provider = p.File
			t.annotations[k.Code] = k
			t.annotationNames[k.Name] = k.Code
			t.customAnnotations = append(t.customAnnotations, k)
			annotationOrigin[k.Code] = fmt.Sprintf("annotationKeys[%d] %q in %s", i, k.Name, at(p.File, line))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(t.customTypes, func(i, j int) bool { return t.customTypes[i].Code < t.customTypes[j].Code })
	sort.Slice(t.customAnnotations, func(i, j int) bool { return t.customAnnotations[i].Code < t.customAnnotations[j].Code })
	return t, nil
}
