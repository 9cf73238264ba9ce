// Package meta is what the Pinpoint input remembers about agents: who sent a message (from
// the call headers), each agent run's PAgentInfo, and its metadata (api, sql, sqlUid,
// string, exception), persisted in the cache because agents send each item only once per
// process and never again after a collector restart.
package meta

import (
	"fmt"
	"strconv"
	"strings"
)

// AgentKey identifies one agent run: Pinpoint scopes every metadata id to it.
type AgentKey struct {
	AgentID   string
	StartTime int64 // epoch ms, the `starttime` header
}

// String renders agentId^startTime.
func (k AgentKey) String() string {
	return k.AgentID + "^" + strconv.FormatInt(k.StartTime, 10)
}

// ParseAgentKey reads what String wrote (agent ids have no '^').
func ParseAgentKey(s string) (AgentKey, bool) {
	i := strings.LastIndexByte(s, '^')
	if i <= 0 {
		return AgentKey{}, false
	}
	start, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return AgentKey{}, false
	}
	return AgentKey{AgentID: s[:i], StartTime: start}, true
}

// Sender is the agent that sent a call, from its headers. Every span, chunk and stat is
// attributed to the sender, never to transactionId.agentId (which names the root agent).
type Sender struct {
	AgentKey
	AgentName       string
	ApplicationName string
	ServiceType     int32 // the `servicetype` header; -1 when absent
}

// Kind is a metadata kind.
type Kind byte

// Metadata kinds, as Pinpoint's Metadata service has them.
const (
	KindAPI       Kind = 'a'
	KindSQL       Kind = 's'
	KindSQLUID    Kind = 'u'
	KindString    Kind = 't'
	KindException Kind = 'e'
)

func (k Kind) String() string {
	switch k {
	case KindAPI:
		return "api"
	case KindSQL:
		return "sql"
	case KindSQLUID:
		return "sqluid"
	case KindString:
		return "string"
	case KindException:
		return "exception"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// API is one PApiMetaData.
type API struct {
	Info     string // e.g. "com.example.DemoController.demo2()" or a Go function name
	Line     int32
	Type     int32 // 0 DEFAULT, 100 WEB_REQUEST, 200 INVOCATION...
	Location string
}
