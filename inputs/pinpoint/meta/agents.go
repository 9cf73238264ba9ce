package meta

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
)

// AgentRecord is what apmkit keeps of one agent run: the headers of its calls and its
// PAgentInfo, so stats and spans that arrive after an apmkit restart still carry the
// agent's identity (agents never re-register).
type AgentRecord struct {
	Sender
	Info     *pb.PAgentInfo `json:"-"`
	InfoRaw  []byte         `json:"info,omitempty"` // PAgentInfo bytes, as persisted
	Received time.Time      `json:"received"`
}

// PutAgent stores an agent run's record.
func (s *Store) PutAgent(sender Sender, info *pb.PAgentInfo) error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		return fmt.Errorf("meta: encode agent info: %w", err)
	}
	rec := AgentRecord{Sender: sender, Info: info, InfoRaw: raw, Received: s.opts.Now()}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := agentPrefix(prefixAgent, sender.AgentKey)
	if err := s.db.Set(key, val, s.opts.TTL); err != nil {
		return fmt.Errorf("meta: store agent %s: %w", sender.AgentKey, err)
	}
	s.lru.Add(string(key), rec)
	return nil
}

// Agent returns the record of an agent run.
func (s *Store) Agent(k AgentKey) (AgentRecord, bool) {
	v, ok := s.get(agentPrefix(prefixAgent, k), decodeAgent)
	if !ok {
		return AgentRecord{}, false
	}
	return v.(AgentRecord), true
}

func decodeAgent(raw []byte) (any, error) {
	var rec AgentRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	rec.Info = &pb.PAgentInfo{}
	if err := proto.Unmarshal(rec.InfoRaw, rec.Info); err != nil {
		return nil, err
	}
	return rec, nil
}

// Agents lists every stored agent run (for /v1/stats and tools).
func (s *Store) Agents() ([]AgentRecord, error) {
	var out []AgentRecord
	err := s.db.Scan([]byte{prefixAgent}, func(_, val []byte) error {
		if rec, err := decodeAgent(val); err == nil {
			out = append(out, rec.(AgentRecord))
		}
		return nil
	})
	return out, err
}

// Touch marks an agent run as seen. At most once per TTL/4 it re-writes the run's entries
// with a fresh TTL, so the metadata of a live agent never expires while a run unseen for
// the whole TTL does.
func (s *Store) Touch(k AgentKey) {
	if s.opts.TTL <= 0 {
		return
	}
	now := s.opts.Now()
	if last, ok := s.touch.Get(k); ok && now.Sub(last) < s.opts.TTL/4 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.touch.Get(k); ok && now.Sub(last) < s.opts.TTL/4 {
		return
	}
	s.touch.Add(k, now)
	s.refresh(agentPrefix(prefixAgent, k))
	s.refresh(agentPrefix(prefixMeta, k))
}

// refresh re-sets every entry under prefix with a fresh TTL; failures leave the old TTL.
func (s *Store) refresh(prefix []byte) {
	type kv struct{ k, v []byte }
	var entries []kv
	_ = s.db.Scan(prefix, func(k, v []byte) error {
		entries = append(entries, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
		return nil
	})
	for _, e := range entries {
		_ = s.db.Set(e.k, e.v, s.opts.TTL)
	}
}
