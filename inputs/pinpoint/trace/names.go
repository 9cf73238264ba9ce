package trace

import (
	"strconv"
	"strings"

	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
)

// annotationNames maps annotation key codes to field keys. It is built once from the
// (immutable) table, so it is bounded by the table and never written afterwards.
type annotationNames struct{ byCode map[int32]string }

// reservedFields are the fields the converter writes itself; an annotation whose name
// would collide gets the prefix "annotation_".
var reservedFields = []string{
	"trace_id", "span_id", "parent_id", "resource", "start", "duration", "message",
	"error_type", "error_message", "error_stack", "db_sql_bind_values",
	"remote_addr", "parent_application", "acceptor_host", FieldHTTPURLRaw,
}

func newAnnotationNames(t *servicetype.Table) annotationNames {
	keys := t.Annotations()
	n := annotationNames{byCode: make(map[int32]string, len(keys))}
	for _, k := range keys {
		name := snakeCase(k.Name)
		if name == "" || isReserved(name) {
			name = "annotation_" + firstNonEmpty(name, strconv.Itoa(int(k.Code)))
		}
		n.byCode[k.Code] = name
	}
	return n
}

func isReserved(name string) bool {
	for _, r := range reservedFields {
		if r == name {
			return true
		}
	}
	return false
}

// field returns the field key of an annotation code; codes the table does not know are
// annotation_<code>.
func (n annotationNames) field(code int32) string {
	if name, ok := n.byCode[code]; ok {
		return name
	}
	return "annotation_" + strconv.Itoa(int(code))
}

// snakeCase turns an AnnotationKey name into a field key: lower case, words split at
// punctuation and at lower-to-upper case changes, joined by "_":
// "http.status.code" -> "http_status_code", "args[0]" -> "args_0",
// "SQL-BindValue" -> "sql_bind_value", "MONGO-JSON-Data" -> "mongo_json_data".
func snakeCase(s string) string {
	var b strings.Builder
	pendingSep := false
	var prev byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		lower, upper, digit := c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9'
		if !lower && !upper && !digit {
			pendingSep = b.Len() > 0
			prev = c
			continue
		}
		if upper && prev >= 'a' && prev <= 'z' {
			pendingSep = true
		}
		if pendingSep {
			b.WriteByte('_')
			pendingSep = false
		}
		if upper {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
		prev = s[i]
	}
	return b.String()
}
