package tracestore

import (
	"reflect"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// FuzzDecode feeds arbitrary bytes to every decoder of what the store reads back from
// disk. None may panic or allocate beyond the input's size; what decodes must encode back
// to a value that decodes to the same record (so a record never changes by being read and
// written again). Seeds: the records the store writes for a few transactions, agents and
// samples.
func FuzzDecode(f *testing.F) {
	for _, v := range storedValues(f) {
		f.Add(v)
	}
	f.Add([]byte{formatSpans, 1})
	f.Add([]byte{formatEdges, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if spans, err := decodeSpans(b, "t"); err == nil {
			if again, err := decodeSpans(encodeSpans(spans), "t"); err != nil || !reflect.DeepEqual(spans, again) {
				t.Fatalf("spans round trip: %v\n%+v\n%+v", err, spans, again)
			}
		}
		var tx Transaction
		if decodeTxn(b, &tx) == nil {
			var again Transaction
			if err := decodeTxn(encodeTxn(&tx), &again); err != nil || !reflect.DeepEqual(tx, again) {
				t.Fatalf("transaction round trip: %v", err)
			}
		}
		if edges, err := decodeEdges(b); err == nil {
			ptrs := make([]*edgeStat, len(edges))
			for i := range edges {
				ptrs[i] = &edges[i]
			}
			if again, err := decodeEdges(encodeEdges(ptrs)); err != nil || !reflect.DeepEqual(edges, again) {
				t.Fatalf("edges round trip: %v", err)
			}
		}
		var sm Sample
		if decodeSample(b, &sm) == nil {
			var again Sample
			if err := decodeSample(encodeSample(&sm), &again); err != nil || !sameSample(sm, again) {
				t.Fatalf("sample round trip: %v", err)
			}
		}
		var a Agent
		if decodeAgent(b, &a) == nil {
			var again Agent
			if err := decodeAgent(encodeAgent(&a), &again); err != nil || a != again {
				t.Fatalf("agent round trip: %v", err)
			}
		}
		if s, err := decodeText(b); err == nil {
			if again, err := decodeText(encodeText(s)); err != nil || again != s {
				t.Fatalf("text round trip: %v", err)
			}
		}
		var p partition
		if decodePartition(b, &p) == nil {
			var again partition
			if err := decodePartition(encodePartition(&p), &again); err != nil || again != p {
				t.Fatalf("partition round trip: %v", err)
			}
		}
	})
}

// sameSample compares samples bit for bit (NaN values do not equal themselves).
func sameSample(a, b Sample) bool {
	if len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if a.Values[i].Name != b.Values[i].Name || !sameBits(a.Values[i].Value, b.Values[i].Value) {
			return false
		}
	}
	a.Values, b.Values = nil, nil
	return reflect.DeepEqual(a, b)
}

func sameBits(x, y float64) bool { return x == y || (x != x && y != y) }

// storedValues writes data into a store and returns every value it holds.
func storedValues(t testing.TB) [][]byte {
	s := openStore(t, Options{})
	var rs []row
	for i := range int64(3) {
		rs = append(rs, call(traceID(i), i, base+i*1000, 100, i == 1)...)
	}
	write(t, s, append(rows(rs...), agentPoint("fe-1", base, 0), agentPoint("fe-1", base, base+5000), jvmPoint(base, 1024))...)
	var out [][]byte
	err := s.db().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
