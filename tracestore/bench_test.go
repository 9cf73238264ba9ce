package tracestore

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkWrite stores batches of 1,000 span rows (250 four-span transactions, as the
// Pinpoint input writes them, message field included): the local output's cost per span.
func BenchmarkWrite(b *testing.B) {
	s := openStore(b, Options{CheckEvery: time.Hour})
	var batches [][]byte
	for n := range 8 {
		var rs []row
		for i := range int64(250) {
			rs = append(rs, call(fmt.Sprintf("fe-1^%d^%d", n, i), i, base+i, 100, i%10 == 0)...)
		}
		batches = append(batches, lines(b, rows(rs...)...))
	}
	b.SetBytes(int64(len(batches[0])))
	b.ResetTimer()
	for i := range b.N {
		if err := s.Write(batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/span")
}
