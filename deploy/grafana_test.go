package deploy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

const dashboardPath = "grafana/apmkit-pinpoint.json"

// token is one InfluxQL token.
type token struct {
	kind string // ident (bare), qident ("quoted"), string ('literal'), regex, number, var ($x), op
	text string
}

// lexInfluxQL splits an InfluxQL query. A slash starts a regex only where a value is
// expected (after =~ or !~); elsewhere it divides.
func lexInfluxQL(q string) ([]token, error) {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := i + 1
			var b strings.Builder
			for ; j < len(q) && q[j] != c; j++ {
				if q[j] == '\\' && j+1 < len(q) {
					j++
				}
				b.WriteByte(q[j])
			}
			if j >= len(q) {
				return nil, fmt.Errorf("unterminated %c", c)
			}
			kind := "qident"
			if c == '\'' {
				kind = "string"
			}
			toks = append(toks, token{kind, b.String()})
			i = j + 1
		case c == '/' && len(toks) > 0 && (toks[len(toks)-1].text == "=~" || toks[len(toks)-1].text == "!~"):
			j := i + 1
			for ; j < len(q) && q[j] != '/'; j++ {
				if q[j] == '\\' {
					j++
				}
			}
			if j >= len(q) {
				return nil, fmt.Errorf("unterminated regex")
			}
			toks = append(toks, token{"regex", q[i+1 : j]})
			i = j + 1
		case c == '$':
			j := i + 1
			if j < len(q) && q[j] == '{' {
				end := strings.IndexByte(q[j:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ${")
				}
				j += end + 1
			} else {
				for j < len(q) && (isIdentByte(q[j])) {
					j++
				}
			}
			toks = append(toks, token{"var", q[i:j]})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.') {
				j++
			}
			toks = append(toks, token{"number", q[i:j]})
			i = j
		case isIdentByte(c):
			j := i
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			toks = append(toks, token{"ident", q[i:j]})
			i = j
		default:
			op := string(c)
			if i+1 < len(q) && slices.Contains([]string{"=~", "!~", "!=", "<>", "<=", ">="}, q[i:i+2]) {
				op = q[i : i+2]
			}
			if !strings.Contains("=<>!+-*/(),.", string(c)) {
				return nil, fmt.Errorf("unexpected %q", c)
			}
			toks = append(toks, token{"op", op})
			i += len(op)
		}
	}
	return toks, nil
}

func isIdentByte(c byte) bool {
	return c == '_' || unicode.IsLetter(rune(c)) || c >= '0' && c <= '9'
}

// queryRefs is what one query reads.
type queryRefs struct {
	measurement string
	fields      []string          // SELECT expressions
	tags        []string          // GROUP BY, SHOW TAG VALUES WITH KEY
	conditions  []string          // WHERE identifiers (tag or field)
	tagValues   map[string]string // WHERE tag = 'value'
}

var influxKeywords = map[string]bool{
	"select": true, "from": true, "where": true, "and": true, "or": true, "group": true, "by": true,
	"as": true, "fill": true, "null": true, "none": true, "linear": true, "previous": true, "order": true,
	"desc": true, "asc": true, "limit": true, "slimit": true, "offset": true, "tz": true, "time": true,
	"show": true, "tag": true, "values": true, "with": true, "key": true, "true": true, "false": true,
}

// parseQuery reads the references of the query shapes a dashboard uses: SELECT ... FROM m
// [WHERE ...] [GROUP BY ...] and SHOW TAG VALUES FROM m WITH KEY = k [WHERE ...]. Anything
// else (subqueries, regex measurements, SHOW MEASUREMENTS) is an error: this check cannot
// vouch for it, so the dashboard must not use it.
func parseQuery(q string) (queryRefs, error) {
	toks, err := lexInfluxQL(q)
	if err != nil {
		return queryRefs{}, err
	}
	refs := queryRefs{tagValues: map[string]string{}}
	kw := func(i int, word string) bool {
		return i < len(toks) && toks[i].kind == "ident" && strings.EqualFold(toks[i].text, word)
	}
	// clause splits the tokens at top-level keywords.
	clauses := map[string][]token{}
	cur, depth := "", 0
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.text == "(":
			depth++
		case t.text == ")":
			depth--
		}
		if depth == 0 && t.kind == "ident" {
			switch w := strings.ToLower(t.text); {
			case w == "select" || w == "from" || w == "where" || w == "limit" || w == "slimit" || w == "fill" || w == "tz":
				cur = w
				continue
			case (w == "group" || w == "order") && kw(i+1, "by"):
				cur = w + " by"
				i++
				continue
			case w == "show" && kw(i+1, "tag") && kw(i+2, "values"):
				cur = "show tag values"
				i += 2
				continue
			case w == "with" && kw(i+1, "key"):
				cur = "with key"
				i++
				continue
			}
		}
		if strings.EqualFold(t.text, "select") && depth > 0 {
			return refs, fmt.Errorf("subqueries are not checked; rewrite the query")
		}
		clauses[cur] = append(clauses[cur], t)
	}
	if len(clauses[""]) > 0 {
		return refs, fmt.Errorf("query does not start with SELECT or SHOW TAG VALUES")
	}
	from := clauses["from"]
	if len(from) == 0 || (from[len(from)-1].kind != "ident" && from[len(from)-1].kind != "qident") {
		return refs, fmt.Errorf("FROM must name one measurement")
	}
	refs.measurement = from[len(from)-1].text // "rp"."m" -> m
	refs.fields = identifiers(clauses["select"], true)
	refs.tags = identifiers(clauses["group by"], false)
	if wk := clauses["with key"]; len(wk) == 2 && wk[0].text == "=" {
		refs.tags = append(refs.tags, wk[1].text)
	} else if len(wk) > 0 {
		return refs, fmt.Errorf("WITH KEY must be = \"key\"")
	}
	where := clauses["where"]
	for i, t := range where {
		if (t.kind == "ident" && !influxKeywords[strings.ToLower(t.text)]) || t.kind == "qident" {
			refs.conditions = append(refs.conditions, t.text)
			if i+2 < len(where) && where[i+1].text == "=" && where[i+2].kind == "string" {
				refs.tagValues[t.text] = where[i+2].text
			}
		}
	}
	if _, ok := clauses["select"]; !ok && !slices.ContainsFunc(toks, func(t token) bool { return strings.EqualFold(t.text, "values") }) {
		return refs, fmt.Errorf("no SELECT")
	}
	return refs, nil
}

// identifiers lists the column references of a clause: quoted identifiers and bare words
// that are not keywords, function names (followed by "("), or aliases (after AS).
func identifiers(toks []token, isSelect bool) []string {
	var out []string
	for i, t := range toks {
		if i > 0 && strings.EqualFold(toks[i-1].text, "as") {
			continue
		}
		switch t.kind {
		case "qident":
			out = append(out, t.text)
		case "ident":
			w := strings.ToLower(t.text)
			if influxKeywords[w] || (i+1 < len(toks) && toks[i+1].text == "(") {
				continue
			}
			if !isSelect || w != "as" {
				out = append(out, t.text)
			}
		}
	}
	return out
}

// dashboardQueries walks the panels (rows' nested panels too) and the template variables.
func dashboardQueries(dash map[string]any) (map[string]string, []error) {
	queries := map[string]string{}
	var errs []error
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			panel, _ := p.(map[string]any)
			title := fmt.Sprint(panel["title"])
			if nested, ok := panel["panels"].([]any); ok {
				walk(nested)
			}
			targets, _ := panel["targets"].([]any)
			for _, tg := range targets {
				target, _ := tg.(map[string]any)
				q, _ := target["query"].(string)
				where := fmt.Sprintf("panel %q target %v", title, target["refId"])
				if raw, _ := target["rawQuery"].(bool); !raw || q == "" {
					errs = append(errs, fmt.Errorf("%s: not a raw InfluxQL query (the query builder's form is not checked)", where))
					continue
				}
				queries[where] = q
				if alias, _ := target["alias"].(string); alias != "" {
					queries[where+" alias"] = alias
				}
			}
		}
	}
	panels, _ := dash["panels"].([]any)
	walk(panels)
	templating, _ := dash["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		variable, _ := v.(map[string]any)
		if variable["type"] == "query" {
			q, _ := variable["query"].(string)
			queries[fmt.Sprintf("variable %q", variable["name"])] = q
		}
	}
	return queries, errs
}

var aliasTag = regexp.MustCompile(`\$tag_([A-Za-z0-9_]+)`)

// checkDashboard checks every query against what apmkit writes (observed from the real
// converters) and what docs/SCHEMA.md documents: both must have each name.
func checkDashboard(dashJSON []byte, written schema, doc string) []error {
	var dash map[string]any
	if err := json.Unmarshal(dashJSON, &dash); err != nil {
		return []error{err}
	}
	queries, errs := dashboardQueries(dash)
	if len(queries) == 0 {
		return append(errs, fmt.Errorf("no queries found"))
	}
	groupBy := map[string][]string{}
	for _, where := range slices.Sorted(func(yield func(string) bool) {
		for k := range queries {
			if !yield(k) {
				return
			}
		}
	}) {
		q := queries[where]
		if base, ok := strings.CutSuffix(where, " alias"); ok {
			for _, m := range aliasTag.FindAllStringSubmatch(q, -1) {
				if !slices.Contains(groupBy[base], m[1]) {
					errs = append(errs, fmt.Errorf("%s: alias uses $tag_%s but the query does not GROUP BY %q", base, m[1], m[1]))
				}
			}
			continue
		}
		refs, err := parseQuery(q)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v: %s", where, err, q))
			continue
		}
		groupBy[where] = refs.tags
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		m := written[refs.measurement]
		if !slices.Contains(codeMeasurements, refs.measurement) || m == nil {
			fail("measurement %q: apmkit writes %v", refs.measurement, codeMeasurements)
			continue
		}
		docs := documentedFor(doc, refs.measurement)
		check := func(what, name string, ok bool) {
			switch {
			case !ok:
				fail("%s %q is not one apmkit writes in %s", what, name, refs.measurement)
			case !docs.names[name]:
				fail("%s %q of %s is not in SCHEMA.md", what, name, refs.measurement)
			}
		}
		for _, f := range refs.fields {
			check("field", f, m.fields[f])
		}
		for _, tag := range refs.tags {
			check("tag", tag, m.tags[tag])
		}
		for _, c := range refs.conditions {
			check("tag or field", c, m.tags[c] || m.fields[c])
		}
		for tag, v := range refs.tagValues {
			if !m.values[tag][v] {
				fail("%s = '%s': apmkit wrote no such value in the recordings (seen: %v)", tag, v, slices.Sorted(func(yield func(string) bool) {
					for k := range m.values[tag] {
						if !yield(k) {
							return
						}
					}
				}))
			}
			if vals := docs.values[tag]; len(vals) > 0 && !vals[v] {
				fail("%s = '%s' is not a value SCHEMA.md lists", tag, v)
			}
		}
	}
	return errs
}

func TestDashboardQueriesWhatApmkitWrites(t *testing.T) {
	dash := readFile(t, filepath.FromSlash(dashboardPath))
	errs := checkDashboard([]byte(dash), writtenSchema(t), outputSchemaDoc(t))
	for _, err := range errs {
		t.Error(err)
	}
	// The panels the dashboard promises (README): fail if one is lost in an edit.
	for _, field := range []string{"JvmMemoryHeapUsed", "JvmMemoryHeapMax", "JvmMemoryNonHeapUsed", "JvmCpuLoad",
		"JvmGcOldCount", "JvmGcOldTime", "ActiveTraceFast", "TotalThreadCount", "LoadedClassCount", "OpenFileDescriptorCount", `\"duration\"`, `'error'`, `'entry'`} {
		if !strings.Contains(dash, field) {
			t.Errorf("the dashboard no longer queries %s", field)
		}
	}
}

// TestDashboardMistakesAreCaught: each mistake, applied to the real dashboard, is reported.
func TestDashboardMistakesAreCaught(t *testing.T) {
	dash := readFile(t, filepath.FromSlash(dashboardPath))
	written, doc := writtenSchema(t), outputSchemaDoc(t)
	if errs := checkDashboard([]byte(dash), written, doc); len(errs) > 0 {
		t.Fatalf("the dashboard itself fails: %v", errs)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"misspelt field", `mean(\"JvmMemoryHeapUsed\")`, `mean(\"JvmHeapUsed\")`, `field "JvmHeapUsed" is not one apmkit writes`},
		{"DataKit's measurement name", `FROM \"pinpoint_jvm\" WHERE`, `FROM \"pinpoint-metric\" WHERE`, `measurement "pinpoint-metric"`},
		{"tag that is a field", `GROUP BY \"service\", \"operation\"`, `GROUP BY \"service\", \"resource\"`, `tag "resource" is not one apmkit writes`},
		{"unknown span_type value", `\"span_type\" = 'entry'`, `\"span_type\" = 'server'`, `span_type = 'server'`},
		{"unknown status value", `\"status\" = 'error'`, `\"status\" = 'failed'`, `status = 'failed'`},
		{"alias tag not grouped", `"alias": "$tag_service mean"`, `"alias": "$tag_host mean"`, `alias uses $tag_host`},
		{"variable on a missing tag", `WITH KEY = \"agent_id\"`, `WITH KEY = \"agent\"`, `tag "agent" is not one apmkit writes`},
		{"builder query", `"rawQuery": true`, `"rawQuery": false`, "not a raw InfluxQL query"},
		{"subquery", `SELECT mean(\"JvmCpuLoad\") FROM \"pinpoint_jvm\"`, `SELECT mean(\"x\") FROM (SELECT \"JvmCpuLoad\" AS \"x\" FROM \"pinpoint_jvm\")`, "subqueries are not checked"},
	} {
		mutated := strings.Replace(dash, c.old, c.new, 1)
		if mutated == dash {
			t.Errorf("%s: %q is not in the dashboard; update this case", c.name, c.old)
			continue
		}
		var all []string
		for _, err := range checkDashboard([]byte(mutated), written, doc) {
			all = append(all, err.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), c.want) {
			t.Errorf("%s: want an error containing %q, got %q", c.name, c.want, all)
		}
	}
	// A field written but not documented: every written field is documented
	// (TestSchemaDocMatchesCode), so take one out of the doc.
	undocumented := strings.ReplaceAll(doc, "TotalThreadCount", "ThreadCount")
	var all []string
	for _, err := range checkDashboard([]byte(dash), written, undocumented) {
		all = append(all, err.Error())
	}
	if want := `"TotalThreadCount" of pinpoint_jvm is not in SCHEMA.md`; !strings.Contains(strings.Join(all, "\n"), want) {
		t.Errorf("field written but not documented: want an error containing %q, got %q", want, all)
	}
}

func TestParseQuery(t *testing.T) {
	refs, err := parseQuery(`SELECT count("duration") * 1000 / $__interval_ms AS "rps", percentile(duration, 95) FROM "autogen"."pinpoint" WHERE "service" =~ /^$service$/ AND span_type = 'entry' AND $timeFilter GROUP BY time($__interval), "service" fill(0)`)
	if err != nil {
		t.Fatal(err)
	}
	want := queryRefs{measurement: "pinpoint", fields: []string{"duration", "duration"}, tags: []string{"service"},
		conditions: []string{"service", "span_type"}, tagValues: map[string]string{"span_type": "entry"}}
	if fmt.Sprint(refs) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", refs, want)
	}
	for _, bad := range []string{`SHOW MEASUREMENTS`, `SELECT * FROM /pinpoint.*/`, `SELECT "a" FROM "m" WHERE "x" = 'unterminated`} {
		if _, err := parseQuery(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
