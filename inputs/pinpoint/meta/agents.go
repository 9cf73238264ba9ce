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
	defer s.lockRun(sender.AgentKey)()
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
