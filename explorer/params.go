package explorer

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// params reads a request's query parameters, collecting every problem, so one 400 answer
// names all of them. Parameters a handler does not read are problems too: a typo such as
// `min=` must not silently search everything.
type params struct {
	v    url.Values
	read []string
	errs []string
}

func newParams(v url.Values) *params { return &params{v: v} }

func (p *params) bad(format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

// str returns a parameter's value ("" when absent); given twice, it is a problem.
func (p *params) str(name string) string {
	p.read = append(p.read, name)
	vs := p.v[name]
	if len(vs) > 1 {
		p.bad("%s: given %d times, at most once", name, len(vs))
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// list returns every value of a repeatable parameter.
func (p *params) list(name string) []string {
	p.read = append(p.read, name)
	return p.v[name]
}

// integer reads an integer parameter within [lo, hi], def when absent.
func (p *params) integer(name string, def, lo, hi int64) int64 {
	s := p.str(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		p.bad("%s: %q is not an integer from %d to %d", name, s, lo, hi)
		return def
	}
	return n
}

// millis reads a duration in milliseconds (decimals allowed, >= 0) as µs; -1 when absent.
func (p *params) millis(name string) int64 {
	s := p.str(name)
	if s == "" {
		return -1
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e12 {
		p.bad("%s: %q is not a number of milliseconds >= 0", name, s)
		return -1
	}
	return int64(f * 1000)
}

// boolean reads true or false; nil when absent.
func (p *params) boolean(name string) *bool {
	switch s := p.str(name); s {
	case "":
		return nil
	case "true", "false":
		b := s == "true"
		return &b
	default:
		p.bad("%s: %q is not true or false", name, s)
		return nil
	}
}

// choice reads one of the allowed values, the first when absent.
func (p *params) choice(name string, allowed ...string) string {
	s := p.str(name)
	if s == "" {
		return allowed[0]
	}
	if !slices.Contains(allowed, s) {
		p.bad("%s: %q is not one of %s", name, s, strings.Join(allowed, ", "))
	}
	return s
}

// timeRange reads from and to, epoch milliseconds, inclusive; by default the hour up to
// now.
func (p *params) timeRange(now time.Time) (from, to int64) {
	const maxMs = 1 << 50 // far beyond any date, far below int64 µs overflow
	to = p.integer("to", now.UnixMilli(), 0, maxMs)
	from = p.integer("from", to-time.Hour.Milliseconds(), 0, maxMs)
	if from > to {
		p.bad("from (%d) is after to (%d)", from, to)
	}
	return from, to
}

// err reports the problems, unknown parameters included; nil when there are none.
func (p *params) err() error {
	for name := range p.v {
		if !slices.Contains(p.read, name) {
			known := slices.Clone(p.read)
			slices.Sort(known)
			p.bad("%s: unknown parameter (known: %s)", name, strings.Join(slices.Compact(known), ", "))
		}
	}
	if len(p.errs) == 0 {
		return nil
	}
	slices.Sort(p.errs)
	return errors.New(strings.Join(p.errs, "; "))
}
