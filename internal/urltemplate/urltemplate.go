// Package urltemplate turns URLs into route templates (ids become {id}), so that a tag or a
// per-URL table stays bounded: the smart sampler counts by template, and the http_url tag
// holds one.
package urltemplate

import "strings"

// IDSegment is what Template puts in place of an id.
const IDSegment = "{id}"

// Template returns the template of a URL or path, so that the requests of one route
// count as one: the query (?...), the fragment (#...) and matrix parameters (;jsessionid=...)
// are cut, and every path segment that is an id becomes {id}. An id is a decimal number, a
// UUID (8-4-4-4-12 hex digits, or 32 hex digits), or a hex id: at least 8 hex digits with at
// least one decimal digit (MongoDB ObjectIds, hashes; a word such as "deadbeef" or
// "accepted" stays). So /orders/1340cbae-5c4e-4a8b-9d3e-2f1a0b9c8d7e?x=1 and /stock/42
// become /orders/{id} and /stock/{id}. Anything else stays as it is, a scheme and host
// included (http://shop:8080/orders/7 -> http://shop:8080/orders/{id}).
func Template(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if !strings.ContainsAny(u, "0123456789;") {
		return u // no segment can be an id
	}
	var b strings.Builder
	b.Grow(len(u))
	for i := 0; ; i++ {
		seg, rest, more := strings.Cut(u, "/")
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
		}
		if i > 0 {
			b.WriteByte('/')
		}
		if isID(seg) {
			b.WriteString(IDSegment)
		} else {
			b.WriteString(seg)
		}
		if !more {
			return b.String()
		}
		u = rest
	}
}

// isID reports whether a path segment is a number, a UUID or a hex id.
func isID(s string) bool {
	if s == "" {
		return false
	}
	digits, letters := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			letters++
		case c == '-':
			return isUUID(s)
		default:
			return false
		}
	}
	switch {
	case letters == 0:
		return true // a number
	case len(s) >= 8 && digits > 0:
		return true // a hex id, or a UUID without dashes
	}
	return false
}

// isUUID reports whether s is 8-4-4-4-12 hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
