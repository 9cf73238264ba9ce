package trace

import "testing"

// TestIDHash pins h: the values were computed once with an independent implementation
// (Python: struct.pack('>q', v) for integer parts after a 0x01 byte, 0x02 + length + bytes
// for strings, FNV-1a 64 over the concatenation, result read as a signed 64-bit integer).
// A change here changes every stored span id: it must never happen silently.
func TestIDHash(t *testing.T) {
	cases := []struct {
		name string
		got  int64
		want int64
	}{
		{"next", nextCallID(7986916454579006446, 3502342085044352444), 2651372965522886169},
		{"next with extremes", nextCallID(-1, -9223372036854775808), 3318106969286179034},
		{"async spawn", asyncSpawnID(1641556045034430087, 1), -6665769041846573190},
		{"async event", asyncEventID(1641556045034430087, 1, 1, 2), -342804895956274352},
		{"sync event", syncEventID(2177403690915346696, 21), 2335471026647255778},
		{"negative span id", syncEventID(-5, 0), 4221807087886394267},
		{"one part", newIDHash().int(0).id(), 5952119183343170476},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: h = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestEntryParentID(t *testing.T) {
	if got := entryParentID(42, -1); got != 0 {
		t.Errorf("root span parent_id = %d, want 0", got)
	}
	// The callee of the "next" case above: its parent_id is the caller's exit span_id.
	if got := entryParentID(3502342085044352444, 7986916454579006446); got != 2651372965522886169 {
		t.Errorf("callee parent_id = %d", got)
	}
}

// Ids of different kinds must not collide just because their numbers line up.
func TestIDKindsDiffer(t *testing.T) {
	ids := map[int64]string{}
	add := func(name string, id int64) {
		if prev, dup := ids[id]; dup {
			t.Errorf("%s collides with %s", name, prev)
		}
		ids[id] = name
	}
	add("sync(1,2)", syncEventID(1, 2))
	add("next(1,2)", nextCallID(1, 2))
	add("async(1,2)", asyncSpawnID(1, 2))
	add("asyncEvent(1,2,0,0)", asyncEventID(1, 2, 0, 0))
	add("sync(2,1)", syncEventID(2, 1))
}
