package tracestore

import (
	"cmp"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Node is a service-map node: USER, an application, or a destination (database, cache,
// queue, remote service) named by the destination its callers give.
type Node struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Edge is the calls from one node to another within a time range.
type Edge struct {
	From     string `json:"from"`
	FromType string `json:"from_type"`
	To       string `json:"to"`
	ToType   string `json:"to_type"`
	Calls    uint64 `json:"calls"`
	Errors   uint64 `json:"errors"`
	SumUs    uint64 `json:"-"`
	MaxUs    uint64 `json:"-"`
	// Histogram counts calls by Pinpoint's buckets: 1s, 3s, 5s, Slow, Error.
	Histogram map[string]uint64 `json:"histogram"`
}

// ServiceMap is the nodes and edges of a time range.
type ServiceMap struct {
	Nodes []Node
	Edges []Edge
}

// ServiceMap returns who called whom between fromUs and toUs (whole minutes: the counts
// are kept per minute of the calls' start). An application calling another is counted
// from the callee's entry spans, which name their caller and the host:port they were
// called on; the caller's exit spans to that host:port are the same calls and are left
// out, so every call is one edge: USER -> frontend -> backend -> database.
func (s *Store) ServiceMap(fromUs, toUs int64) (ServiceMap, error) {
	agg := map[edgeKey]*edgeStat{}
	r := timeRange([]byte{kindEdge}, floorDiv(fromUs, 60_000_000), floorDiv(toUs, 60_000_000), false)
	err := s.scan(r, func(_ []byte, item *badger.Item) bool {
		var edges []edgeStat
		err := item.Value(func(v []byte) (err error) {
			edges, err = decodeEdges(v)
			return err
		})
		if err != nil {
			s.counters.corrupt.Add(1)
			return true
		}
		for i := range edges {
			e := &edges[i]
			k := edgeKey{e.From, e.FromType, e.To, e.ToType, e.Via}
			if a := agg[k]; a != nil {
				a.merge(e)
			} else {
				agg[k] = e
			}
		}
		return true
	})
	if err != nil {
		return ServiceMap{}, err
	}
	return buildMap(agg), nil
}

// buildMap leaves out the exit spans that called an application (see ServiceMap), merges
// what differs only by the callee's host:port, and lists the nodes.
func buildMap(agg map[edgeKey]*edgeStat) ServiceMap {
	accepted := map[[2]string]bool{} // (caller app, host:port) pairs a callee accepted
	for k := range agg {
		if k.fromType == NodeApp && k.toType == NodeApp && k.via != "" {
			accepted[[2]string{k.from, k.via}] = true
		}
	}
	merged := map[edgeKey]*edgeStat{}
	for k, e := range agg {
		if k.fromType == NodeApp && k.toType != NodeApp && accepted[[2]string{k.from, k.to}] {
			continue
		}
		k.via = ""
		if m := merged[k]; m != nil {
			m.merge(e)
			continue
		}
		c := *e
		merged[k] = &c
	}
	var sm ServiceMap
	nodes := map[Node]bool{}
	for k, e := range merged {
		sm.Edges = append(sm.Edges, edgeOf(e))
		nodes[Node{k.from, k.fromType}] = true
		nodes[Node{k.to, k.toType}] = true
	}
	for n := range nodes {
		sm.Nodes = append(sm.Nodes, n)
	}
	slices.SortFunc(sm.Nodes, func(a, b Node) int { return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name)) })
	slices.SortFunc(sm.Edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.ToType, b.ToType))
	})
	return sm
}

func edgeOf(e *edgeStat) Edge {
	h := make(map[string]uint64, len(histBuckets))
	for i, name := range histBuckets {
		h[name] = e.Hist[i]
	}
	return Edge{From: e.From, FromType: e.FromType, To: e.To, ToType: e.ToType,
		Calls: e.Calls, Errors: e.Errors, SumUs: e.SumUs, MaxUs: e.MaxUs, Histogram: h}
}
