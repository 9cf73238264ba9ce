// Package replay reads the Pinpoint traffic recordings in testdata/pinpoint (the
// repository's copy of shared/fixtures/pinpoint; format pinpoint-recording/1) and replays
// them into a collector over real gRPC with a raw-bytes codec, exactly as the agents sent
// them. Tests, the load generator and tools use it.
package replay

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Header is a recording's first line.
type Header struct {
	Format        string        `json:"format"`
	Agent         string        `json:"agent"`
	SpanTransport string        `json:"span_transport"`
	Ports         string        `json:"ports"`
	Events        int           `json:"events"`
	Streams       int           `json:"streams"`
	Agents        []AgentHeader `json:"agents"`
}

// AgentHeader is one agent of a recording.
type AgentHeader struct {
	AgentID         string `json:"agentid"`
	ApplicationName string `json:"applicationname"`
	AgentName       string `json:"agentname"`
	StartTime       string `json:"starttime"`
	ServiceType     string `json:"servicetype"`
}

// Event is one line after the header.
type Event struct {
	Seq     int               `json:"seq"`
	TMs     int64             `json:"t_ms"`
	Stream  string            `json:"stream"`
	Method  string            `json:"method"`
	Kind    string            `json:"kind"`  // unary | client_stream | bidi
	Event   string            `json:"event"` // open | msg | close
	Headers map[string]string `json:"headers"`
	Msg     string            `json:"msg"`
	Conn    string            `json:"conn"`
	Err     string            `json:"err"`
}

// Bytes decodes the message of a msg event ("" is a real zero-length message).
func (e Event) Bytes() ([]byte, error) {
	return base64.StdEncoding.DecodeString(e.Msg)
}

// Recording is one parsed recording with its manifest.
type Recording struct {
	Name     string
	Header   Header
	Events   []Event
	Manifest Manifest
}

// Load reads path and the .manifest.json beside it.
func Load(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	rec := &Recording{Name: strings.TrimSuffix(filepath.Base(path), ".jsonl")}
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			if err := json.Unmarshal(sc.Bytes(), &rec.Header); err != nil {
				return nil, fmt.Errorf("%s:1: header: %w", path, err)
			}
			continue
		}
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		rec.Events = append(rec.Events, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rec.Events) != rec.Header.Events {
		return nil, fmt.Errorf("%s: %d events, header says %d", path, len(rec.Events), rec.Header.Events)
	}
	rec.Manifest, err = loadManifest(strings.TrimSuffix(path, ".jsonl") + ".manifest.json")
	return rec, err
}

// FixturesDir finds the repository's copy of the recordings, testdata/pinpoint at the
// repository root (copied from shared/fixtures/pinpoint), from the current directory
// upwards, so a plain clone runs the replay tests.
func FixturesDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			cand := filepath.Join(dir, "testdata", "pinpoint")
			if _, err := os.Stat(cand); err != nil {
				return "", fmt.Errorf("replay: recordings not found at %s", cand)
			}
			return filepath.Clean(cand), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("replay: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// All loads every recording in the fixtures folder.
func All() ([]*Recording, error) {
	dir, err := FixturesDir()
	if err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("replay: no recordings in %s (%v)", dir, err)
	}
	var recs []*Recording
	for _, p := range paths {
		r, err := Load(p)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Manifest is a recording's oracle numbers, read by dotted path.
type Manifest map[string]any

func loadManifest(path string) (Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Get returns the value at a dotted path such as "messages.PSpan".
func (m Manifest) Get(path string) (any, bool) {
	var cur any = map[string]any(m)
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Int returns the integer at a dotted path; it panics when absent, since a test that asks
// for a number the manifest lacks is a broken test.
func (m Manifest) Int(path string) int64 {
	v, ok := m.Get(path)
	if !ok {
		panic("manifest: no " + path)
	}
	n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("manifest: %s = %v is not an integer", path, v))
	}
	return n
}

// Ints returns the integers of an object at a dotted path (e.g. spans_by_agentid).
func (m Manifest) Ints(path string) map[string]int64 {
	v, ok := m.Get(path)
	obj, isObj := v.(map[string]any)
	if !ok || !isObj {
		panic("manifest: no object " + path)
	}
	out := map[string]int64{}
	for k, x := range obj {
		n, err := strconv.ParseInt(fmt.Sprint(x), 10, 64)
		if err == nil {
			out[k] = n
		}
	}
	return out
}

// Only returns a copy of the recording with the calls of the given methods only.
func (r *Recording) Only(methods ...string) *Recording {
	out := *r
	out.Events = nil
	for _, ev := range r.Events {
		for _, m := range methods {
			if ev.Method == m {
				out.Events = append(out.Events, ev)
			}
		}
	}
	return &out
}
