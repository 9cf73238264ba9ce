package tracestore

import (
	"cmp"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Agents lists the agents the store holds data of: the newest run's info of each (its
// start, and its end once it ended) and the newest time it sent data, sorted by
// application and agent id.
func (s *Store) Agents() ([]Agent, error) {
	byID := map[string]*Agent{}
	get := func(id string) *Agent {
		a := byID[id]
		if a == nil {
			a = &Agent{AgentID: id}
			byID[id] = a
		}
		return a
	}
	err := s.scan(prefixRange([]byte{kindInfo}), func(k []byte, item *badger.Item) bool {
		var info Agent
		if item.Value(func(v []byte) error { return decodeAgent(v, &info) }) != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		mergeInfo(get(info.AgentID), &info)
		return true
	})
	if err == nil {
		err = s.scan(prefixRange([]byte{kindSeen}), func(k []byte, item *badger.Item) bool {
			var seen Agent
			if item.Value(func(v []byte) error { return decodeAgent(v, &seen) }) != nil {
				s.counters.corrupt.Add(1)
				return true
			}
			a := get(seen.AgentID)
			a.LastSeenMs = max(a.LastSeenMs, seen.LastSeenMs)
			a.App = cmp.Or(a.App, seen.App)
			a.AgentName = cmp.Or(a.AgentName, seen.AgentName)
			return true
		})
	}
	if err != nil {
		return nil, err
	}
	out := make([]Agent, 0, len(byID))
	for _, a := range byID {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b Agent) int { return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.AgentID, b.AgentID)) })
	return out, nil
}

// mergeInfo folds one info record into the agent: a newer run replaces an older one (its
// records come in key order: the start, then the end); an end adds itself to its run.
func mergeInfo(a, info *Agent) {
	switch {
	case info.StartMs > a.StartMs:
		seen := a.LastSeenMs
		*a = *info
		a.LastSeenMs = seen
	case info.StartMs == a.StartMs && info.EndMs > 0:
		a.EndMs = info.EndMs
	}
}

// Samples returns an agent's stat samples between fromMs and toMs, oldest first.
func (s *Store) Samples(agent string, fromMs, toMs int64) ([]Sample, error) {
	if agent == "" || len(agent) > maxIDLen {
		return nil, nil
	}
	prefix := append([]byte{kindStat}, (&key{}).str(agent).b...)
	var out []Sample
	var prev []byte
	err := s.scan(timeRange(prefix, fromMs, toMs, false), func(k []byte, item *badger.Item) bool {
		if string(sortPart(k)) == string(prev) {
			return true
		}
		prev = append(prev[:0], sortPart(k)...)
		var sm Sample
		if item.Value(func(v []byte) error { return decodeSample(v, &sm) }) != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		out = append(out, sm)
		return true
	})
	return out, err
}
