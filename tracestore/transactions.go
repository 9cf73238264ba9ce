package tracestore

import (
	"bytes"
	"container/heap"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Query selects transactions. Zero values select everything; times are µs since the epoch
// and the range is inclusive.
type Query struct {
	FromUs, ToUs int64
	App, Agent   string
	URLPrefix    string
	URLExact     string
	Method       string
	// Status matches the HTTP status code: exactly, or a whole class (StatusClass 5 is
	// 500-599) when Status is 0.
	Status      int
	StatusClass int
	// MinUs and MaxUs bound the response time; MaxUs < 0 means no bound.
	MinUs, MaxUs int64
	Error        *bool
	// Exception is text (any case) in the exception of the root span or of any failed
	// span of the transaction.
	Exception string
	TraceID   string
	Attrs     []KV // every one must match the root span's attribute exactly
	// ByDuration sorts the slowest first; otherwise the newest first.
	ByDuration bool
	Limit      int
}

// Transactions returns up to q.Limit transactions matching q, and how many match in all.
// It reads the narrowest index the query allows: the trace id, the application, the
// failed transactions, or every transaction of the time range. Memory is bounded by the
// limit, not by the number of matches.
func (s *Store) Transactions(q Query) ([]Transaction, int, error) {
	m := newMatcher(s, q)
	defer m.close()
	if q.TraceID != "" {
		return s.transactionByID(m)
	}
	r := s.txnRange(q)
	var prev []byte
	err := s.scan(r, func(k []byte, item *badger.Item) bool {
		if bytes.Equal(sortPart(k), prev) {
			return true // the same row stored again in a later partition
		}
		prev = append(prev[:0], sortPart(k)...)
		var t Transaction
		if e := item.Value(func(v []byte) error { return decodeTxn(v, &t) }); e != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		m.consider(&t)
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	return m.rows(), m.total, nil
}

// transactionByID finds the root span among the trace's spans.
func (s *Store) transactionByID(m *matcher) ([]Transaction, int, error) {
	spans, _, err := s.Trace(m.q.TraceID, maxTraceSpans)
	if err != nil {
		return nil, 0, err
	}
	for i := range spans {
		if sp := &spans[i]; sp.Kind == KindEntry && sp.ParentID == 0 {
			t := transactionOf(sp)
			m.consider(&t)
		}
	}
	return m.rows(), m.total, nil
}

// maxTraceSpans bounds the spans read to find a trace's root.
const maxTraceSpans = 1 << 20

// txnRange picks the index.
func (s *Store) txnRange(q Query) keyRange {
	switch {
	case q.App != "" && len(q.App) <= maxIDLen:
		return timeRange(append([]byte{kindApp}, (&key{}).str(q.App).b...), q.FromUs, q.ToUs, !q.ByDuration)
	case q.Error != nil && *q.Error:
		return timeRange([]byte{kindErr}, q.FromUs, q.ToUs, !q.ByDuration)
	}
	return timeRange([]byte{kindTxn}, q.FromUs, q.ToUs, !q.ByDuration)
}

// matcher filters transactions and keeps the best q.Limit of them.
type matcher struct {
	s     *Store
	q     Query
	exc   string
	total int
	top   txnHeap // ByDuration: a min-heap of the slowest so far
	list  []Transaction
	// failures reads the exceptions of failed non-root spans, for the exception filter.
	failures *failureReader
}

func newMatcher(s *Store, q Query) *matcher {
	return &matcher{s: s, q: q, exc: strings.ToLower(q.Exception)}
}

func (m *matcher) close() {
	if m.failures != nil {
		m.failures.close()
	}
}

func (m *matcher) consider(t *Transaction) {
	if !m.match(t) {
		return
	}
	m.total++
	switch {
	case m.q.Limit <= 0:
	case !m.q.ByDuration:
		if len(m.list) < m.q.Limit {
			m.list = append(m.list, *t)
		}
	case len(m.top) < m.q.Limit:
		heap.Push(&m.top, *t)
	case slower(t, &m.top[0]):
		m.top[0] = *t
		heap.Fix(&m.top, 0)
	}
}

func (m *matcher) rows() []Transaction {
	if !m.q.ByDuration {
		return m.list
	}
	out := make([]Transaction, len(m.top))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&m.top).(Transaction)
	}
	return out
}

// match applies every filter; the exception filter goes last, as it may read more.
func (m *matcher) match(t *Transaction) bool {
	q := &m.q
	inTime := t.StartUs >= q.FromUs && t.StartUs <= q.ToUs
	ok := inTime &&
		(q.TraceID == "" || t.TraceID == q.TraceID) &&
		(q.App == "" || t.App == q.App) &&
		(q.Agent == "" || t.AgentID == q.Agent) &&
		strings.HasPrefix(t.URL, q.URLPrefix) &&
		(q.URLExact == "" || t.URL == q.URLExact) &&
		(q.Method == "" || strings.EqualFold(t.Method, q.Method)) &&
		(q.Status == 0 || t.Status == q.Status) &&
		(q.StatusClass == 0 || t.Status/100 == q.StatusClass) &&
		t.DurationUs >= q.MinUs && (q.MaxUs < 0 || t.DurationUs <= q.MaxUs) &&
		(q.Error == nil || t.Error == *q.Error) &&
		m.attrsMatch(t)
	if !ok || m.exc == "" {
		return ok
	}
	if strings.Contains(strings.ToLower(t.Exception), m.exc) {
		return true
	}
	if m.failures == nil {
		m.failures = newFailureReader(m.s)
	}
	return m.failures.contains(t.TraceID, m.exc)
}

func (m *matcher) attrsMatch(t *Transaction) bool {
	for _, want := range m.q.Attrs {
		found := false
		for _, a := range t.Attrs {
			if a.Key == want.Key && a.Value == want.Value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// slower orders the duration sort: the slowest first, then the newest.
func slower(a, b *Transaction) bool {
	if a.DurationUs != b.DurationUs {
		return a.DurationUs > b.DurationUs
	}
	if a.StartUs != b.StartUs {
		return a.StartUs > b.StartUs
	}
	return a.TraceID > b.TraceID
}

// txnHeap is a min-heap by slower: its root is the fastest of the kept rows.
type txnHeap []Transaction

func (h txnHeap) Len() int           { return len(h) }
func (h txnHeap) Less(i, j int) bool { return slower(&h[j], &h[i]) }
func (h txnHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *txnHeap) Push(x any)        { *h = append(*h, x.(Transaction)) }
func (h *txnHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// failureReader looks up the exceptions of a trace's failed spans, with one open iterator
// per partition for the whole search (a search may look up thousands of traces).
type failureReader struct {
	s    *Store
	txn  *badger.Txn
	iter []*badger.Iterator
	pids [][]byte
}

func newFailureReader(s *Store) *failureReader {
	f := &failureReader{s: s, txn: s.db().NewTransaction(false)} // open: a scan is running
	for _, id := range s.partitionIDs() {
		pid := partitionPrefix(id)
		f.pids = append(f.pids, pid)
		f.iter = append(f.iter, f.txn.NewIterator(badger.IteratorOptions{Prefix: append(bytes.Clone(pid), kindExc)}))
	}
	return f
}

func (f *failureReader) contains(traceID, text string) bool {
	if len(traceID) > maxIDLen {
		return false
	}
	for i, it := range f.iter {
		prefix := append(bytes.Clone(f.pids[i]), kindExc)
		prefix = append(prefix, byte(len(traceID)))
		prefix = append(prefix, traceID...)
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var exc string
			err := it.Item().Value(func(v []byte) (err error) {
				exc, err = decodeText(v)
				return err
			})
			if err != nil {
				f.s.counters.corrupt.Add(1)
				continue
			}
			if strings.Contains(strings.ToLower(exc), text) {
				return true
			}
		}
	}
	return false
}

func (f *failureReader) close() {
	for _, it := range f.iter {
		it.Close()
	}
	f.txn.Discard()
}
