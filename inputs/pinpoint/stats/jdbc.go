package stats

import (
	"strings"
)

// stripCredentials removes user names and passwords from a JDBC URL (or a Go-style DSN), so
// the url tag never carries a secret and a password rotation does not start a new series.
// It removes:
//   - userinfo before '@' in the authority: jdbc:mysql://user:pass@host/db -> jdbc:mysql://host/db
//   - Oracle's user/password before '@': jdbc:oracle:thin:scott/tiger@host:1521:orcl ->
//     jdbc:oracle:thin:@host:1521:orcl (also @//host/svc and @(DESCRIPTION=...) forms)
//   - a DSN's user:pass@: user:pass@tcp(host:3306)/db -> tcp(host:3306)/db
//   - credential parameters anywhere: ?user=..&password=.., ;user=..;password=.. (SQL Server,
//     jTDS, H2, DB2), (user=..)(password=..) (MySQL address syntax), "User ID=..;Pwd=..",
//     with {braced}, "quoted" or 'quoted' values.
//
// It errs on the side of removing too much: a tag that lost a harmless part is better than
// a leaked password. A URL without credentials is returned unchanged without allocating.
func stripCredentials(url string) string {
	return stripCredentialParams(stripUserInfo(url))
}

// stripUserInfo removes credentials written before an '@'.
func stripUserInfo(s string) string {
	if strings.IndexByte(s, '@') < 0 {
		return s
	}
	// scheme://user:pass@host...: the authority ends at the first '/', '?', ';' or '#'.
	if i := strings.Index(s, "//"); i >= 0 {
		start := i + 2
		authority := s[start:]
		if end := strings.IndexAny(authority, "/?;#"); end >= 0 {
			authority = authority[:end]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			return s[:start] + s[start+at+1:]
		}
	}
	// Credentials not in an authority end at the last '@' before any parameters or an
	// Oracle TNS descriptor.
	head := s
	if end := strings.IndexAny(s, "?;("); end >= 0 {
		head = s[:end]
	}
	at := strings.LastIndexByte(head, '@')
	if at < 0 {
		return s
	}
	// A password containing '/' ends the authority early (jdbc:mysql://u:pa/ss@host/db):
	// everything from "//" to the '@' is the userinfo.
	if i := strings.Index(head[:at], "//"); i >= 0 {
		return s[:i+2] + s[at+1:]
	}
	if hasPrefixFold(s, "jdbc:") {
		// Oracle style jdbc:oracle:thin:user/pass@...: the credentials follow the chain of
		// "name:" prefixes; the '@' stays, as the driver needs it.
		start := schemePrefixEnd(s)
		if start >= at { // jdbc:oracle:thin:@host: nothing before the '@'
			return s
		}
		return s[:start] + s[at:]
	}
	// A DSN (user:pass@tcp(host)/db): everything before the '@' is the credentials.
	return s[at+1:]
}

// schemePrefixEnd returns the end of the leading "jdbc:sub:driver:" chain: the offset after
// the last colon of consecutive names made of letters, digits, '_', '-', '+' and '.'.
func schemePrefixEnd(s string) int {
	end, nameStart := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' && i > nameStart:
			end, nameStart = i+1, i+1
		case isSchemeChar(c):
		default:
			return end
		}
	}
	return end
}

func isSchemeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '+' || c == '.'
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// stripCredentialParams removes every key=value pair whose key names a credential, with
// one separator next to it so the rest stays well-formed.
func stripCredentialParams(s string) string {
	var out strings.Builder // used only once something is removed
	copied := 0             // s[:copied] is already in out (or needs no copy)
	removedAtEnd := false
	for i := 0; i < len(s); {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			break
		}
		eq += i
		keyStart := paramKeyStart(s, i, eq)
		if keyStart == eq || !isCredentialKey(s[keyStart:eq]) {
			// Go on right after the '=', not after the value: a value may hold more pairs,
			// as in MySQL's address=(host=h)(user=u)(password=p).
			i = eq + 1
			continue
		}
		from, to := removalSpan(s, keyStart, paramValueEnd(s, eq+1))
		if from < copied { // the previous removal already took the separator
			from = copied
		}
		if out.Len() == 0 {
			out.Grow(len(s))
		}
		out.WriteString(s[copied:from])
		copied = to
		removedAtEnd = to == len(s)
		i = to
	}
	if copied == 0 {
		return s
	}
	out.WriteString(s[copied:])
	result := out.String()
	if removedAtEnd {
		// jdbc:postgresql://h/db?password=x leaves "db?"; DB2's db:password=x; leaves "db:";
		// "Server=h; Pwd=x" leaves "Server=h; ".
		result = strings.TrimRight(result, "?&;: ")
	}
	return result
}

// paramKeyStart walks back from the '=' at eq over key characters (letters, digits, '_',
// '.', '-' and the spaces of .NET-style keys such as "User ID"), not before lo.
func paramKeyStart(s string, lo, eq int) int {
	k := eq
	for k > lo && isKeyChar(s[k-1]) {
		k--
	}
	for k < eq && s[k] == ' ' {
		k++
	}
	return k
}

func isKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == ' '
}

// paramValueEnd returns the end of the value starting at v: the next '&', ';' or ')'
// outside a {braced} (SQL Server) or quoted value.
func paramValueEnd(s string, v int) int {
	i := v
	if i < len(s) {
		if closing, ok := valueQuote(s[i]); ok {
			if end := strings.IndexByte(s[i+1:], closing); end >= 0 {
				i += end + 2
			} else {
				return len(s) // unterminated: everything after '=' may be the secret
			}
		}
	}
	if end := strings.IndexAny(s[i:], "&;)"); end >= 0 {
		return i + end
	}
	return len(s)
}

func valueQuote(c byte) (closing byte, ok bool) {
	switch c {
	case '{':
		return '}', true
	case '"', '\'':
		return c, true
	}
	return 0, false
}

// removalSpan widens the pair [from, to) by one separator: the following '&'/';' if any,
// else the preceding one; a pair in parentheses loses both.
func removalSpan(s string, from, to int) (int, int) {
	switch {
	case from > 0 && s[from-1] == '(' && to < len(s) && s[to] == ')':
		return from - 1, to + 1
	case to < len(s) && (s[to] == '&' || s[to] == ';'):
		return from, to + 1
	case from > 0 && (s[from-1] == '&' || s[from-1] == ';'):
		return from - 1, to
	}
	return from, to
}

// isCredentialKey reports whether a parameter key names a user or a secret, compared
// case-insensitively and ignoring ' ', '_', '-' and '.' (User ID, user_name, sslPassword,
// keyStorePassword, PWD, ...).
func isCredentialKey(key string) bool {
	var buf [64]byte
	norm := buf[:0]
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == ' ' || c == '_' || c == '-' || c == '.':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		norm = append(norm, c)
	}
	switch string(norm) {
	case "user", "username", "userid", "uid", "login", "pass", "passphrase":
		return true
	}
	for _, secret := range credentialWords {
		if strings.Contains(string(norm), secret) {
			return true
		}
	}
	return false
}

// credentialWords mark a key as secret wherever they appear in it.
var credentialWords = [...]string{"password", "passwd", "pwd", "secret", "token", "credential", "apikey", "accesskey"}
