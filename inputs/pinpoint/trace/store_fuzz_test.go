package trace

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// The fuzz targets below cover what the assembler reads back from its store at Start: pending
// chunk records and span skeletons. Their seeds are the records the assembler itself writes
// for the recorded traffic (and generated trees): storeSeeds replays them and reads the store.

// storeRecord is one key and value found in the store.
type storeRecord struct{ key, val []byte }

// storeSeeds replays every fuzz seed (recordings and generated trees) into an assembler,
// once whole and once with the chunks only (so they stay pending), stops it and returns
// the records of the store under prefix.
func storeSeeds(tb testing.TB, prefix byte) []storeRecord {
	tb.Helper()
	var out []storeRecord
	for _, seed := range fuzzSeeds(tb) {
		for _, chunksOnly := range []bool{false, true} {
			h := newHarness(tb)
			ctx := context.Background()
			for data := seed; len(data) > 0; {
				op := data[0]
				data = data[1:]
				if op&7 > 2 {
					continue // no clock advance: pending chunks stay pending
				}
				if len(data) < 2 {
					break
				}
				n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
				payload := data[2 : 2+n]
				data = data[2+n:]
				if chunksOnly && op&7 != 1 {
					continue
				}
				fuzzStep(nil, h, ctx, op, payload)
			}
			if err := h.asm.Stop(ctx); err != nil {
				tb.Fatal(err)
			}
			err := h.db.Namespace("trace").Scan([]byte{prefix}, func(key, val []byte) error {
				out = append(out, storeRecord{bytes.Clone(key), bytes.Clone(val)})
				return nil
			})
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no %q records from the seeds", prefix)
	}
	return out
}

// restoreAndDrain writes the record to a fresh store, starts an assembler on it, lets every
// wait run out and checks what comes out.
func restoreAndDrain(t *testing.T, key, val []byte) {
	h := newHarness(t, func(o *Options) {
		o.MaxPendingSpans, o.MaxPendingBytes = fuzzMaxPending, 1<<16
	})
	h.sink.fail = nil
	if err := h.db.Namespace("trace").Set(key, val, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := h.asm.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h.clock.Advance(time.Hour)
	_ = h.asm.processDue(ctx)
	checkFuzzState(t, h)
	if err := h.asm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkFuzzState(t, h)
}

// FuzzPendingRecord: a pending chunk record (key and value) that decodes re-encodes to the
// same bytes; whatever is in the store, Start restores it without panicking and the
// chunks that come out are valid points.
func FuzzPendingRecord(f *testing.F) {
	for _, r := range storeSeeds(f, prefixPending) {
		f.Add(r.key, r.val)
		f.Add(r.key, r.val[:len(r.val)/2])
	}
	f.Add([]byte{prefixPending}, []byte{})
	f.Add([]byte{prefixPending, 0xff}, []byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		if len(key) == 0 || key[0] != prefixPending {
			key = append([]byte{prefixPending}, key...)
		}
		if id, ok := spanIDOfPendingKey(key); ok {
			if agent, ok := agentOfSpanID(id); ok {
				if rec, err := decodePendingRecord(val, agent); err == nil {
					raw, err := proto.Marshal(rec.chunk)
					if err != nil {
						t.Fatalf("decoded chunk does not encode: %v", err)
					}
					once := encodePendingRecord(rec.deadline, &rec.sender, raw)
					rec2, err := decodePendingRecord(once, agent)
					if err != nil {
						t.Fatalf("re-encoded record does not decode: %v", err)
					}
					raw2, _ := proto.Marshal(rec2.chunk)
					if twice := encodePendingRecord(rec2.deadline, &rec2.sender, raw2); !bytes.Equal(once, twice) {
						t.Fatal("encoding not stable")
					}
				}
			}
		}
		restoreAndDrain(t, key, val)
	})
}

// FuzzSkeleton: a span skeleton that decodes re-encodes to the same bytes; whatever value
// the store holds under a skeleton key, Start restores it without panicking.
func FuzzSkeleton(f *testing.F) {
	for _, prefix := range []byte{prefixSkeleton, prefixAsyncSkeleton} {
		for _, r := range storeSeeds(f, prefix) {
			f.Add(r.key, r.val)
			f.Add(r.key, r.val[:len(r.val)/2])
		}
	}
	f.Add([]byte{prefixSkeleton}, []byte{})
	f.Add([]byte{prefixSkeleton}, []byte{0, 0, 0, 0, 0, 0, 0, 0, recordVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		if len(val) >= 8 {
			if evs, err := decodeSkeleton(nil, val[8:]); err == nil {
				once := encodeSkeleton(evs, func(*event) bool { return true })
				evs2, err := decodeSkeleton(nil, once)
				if err != nil {
					t.Fatalf("re-encoded skeleton does not decode: %v", err)
				}
				if twice := encodeSkeleton(evs2, func(*event) bool { return true }); !bytes.Equal(once, twice) {
					t.Fatal("encoding not stable")
				}
			}
		}
		if len(key) == 0 || (key[0] != prefixSkeleton && key[0] != prefixAsyncSkeleton) {
			key = append([]byte{prefixSkeleton}, key...)
		}
		restoreAndDrain(t, key, val)
	})
}
