package pipeline

// Replicas sharing a store (cache.Shared, i.e. Redis) may each hold some spans of one
// trace: an agent's calls land on any replica. Each decides its part of the trace after
// decision_wait as usual, then settles the decision: the first replica to decide a trace
// records it (SetIfAbsent, kept as long as decisions are remembered here) and every other
// replica follows it, remembering it for the trace's late spans. So a trace is kept or
// dropped whole across replicas: where the first decider saw an error, the trace is kept
// everywhere; where it dropped by rate, the others drop their spans too.

// shareDecision replaces dt's decision by the trace's recorded one, recording dt's when
// it is the first. A store error leaves the local decision (the cache counts the error).
func (p *Pipeline) shareDecision(dt *decidedTrace) {
	cur, stored, err := p.shared.SetIfAbsent([]byte(dt.id), encodeDecision(dt.d), memoryTTL)
	if err != nil || stored {
		return
	}
	d, ok := decodeDecision(cur)
	if !ok || d == dt.d {
		return
	}
	dt.d = d
	p.buf.mu.Lock()
	p.buf.memory.set(dt.hash, d, p.now())
	p.buf.mu.Unlock()
}

// encodeDecision is one byte: keep in bit 0, the reason above it.
func encodeDecision(d decision) []byte {
	b := byte(d.reason) << 1
	if d.keep {
		b |= 1
	}
	return []byte{b}
}

func decodeDecision(b []byte) (decision, bool) {
	if len(b) != 1 || reason(b[0]>>1) >= numReasons {
		return decision{}, false
	}
	return decision{keep: b[0]&1 == 1, reason: reason(b[0] >> 1)}, true
}
