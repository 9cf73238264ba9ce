package pinpoint

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
)

// Header names Pinpoint agents send on every call.
const (
	headerAgentID         = "agentid"
	headerAgentName       = "agentname"
	headerApplicationName = "applicationname"
	headerStartTime       = "starttime"
	headerServiceType     = "servicetype"
)

// Pinpoint's limits (IdValidateUtils): ids use [a-zA-Z0-9._-]; the application name may be
// up to 254 characters since Pinpoint 3 (24 before), the agent name is a free label.
const (
	maxAgentIDLen         = 24
	maxApplicationNameLen = 254
	maxAgentNameLen       = 255
)

// parseSender validates the call headers and returns who sent the call. A bad or missing
// header is INVALID_ARGUMENT with a message naming it.
func parseSender(ctx context.Context) (*meta.Sender, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	s := &meta.Sender{ServiceType: -1}
	s.AgentID = get(headerAgentID)
	if err := checkID(headerAgentID, s.AgentID, maxAgentIDLen); err != nil {
		return nil, err
	}
	s.ApplicationName = get(headerApplicationName)
	if err := checkID(headerApplicationName, s.ApplicationName, maxApplicationNameLen); err != nil {
		return nil, err
	}
	start := get(headerStartTime)
	t, err := strconv.ParseInt(start, 10, 64)
	if err != nil || t <= 0 {
		return nil, invalidHeader(headerStartTime, "%q is not a positive epoch-millisecond number", start)
	}
	s.StartTime = t
	s.AgentName = get(headerAgentName)
	if len(s.AgentName) > maxAgentNameLen {
		return nil, invalidHeader(headerAgentName, "is %d characters, at most %d allowed", len(s.AgentName), maxAgentNameLen)
	}
	if s.AgentName == "" {
		s.AgentName = s.AgentID
	}
	if st := get(headerServiceType); st != "" {
		n, err := strconv.ParseInt(st, 10, 32)
		if err != nil {
			return nil, invalidHeader(headerServiceType, "%q is not an integer", st)
		}
		s.ServiceType = int32(n)
	}
	return s, nil
}

func checkID(name, v string, maxLen int) error {
	if v == "" {
		return invalidHeader(name, "is missing")
	}
	if len(v) > maxLen {
		return invalidHeader(name, "%q is %d characters, at most %d allowed", v, len(v), maxLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalidHeader(name, "%q has %q; only [a-zA-Z0-9._-] are allowed", v, c)
		}
	}
	return nil
}

func invalidHeader(name, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "pinpoint: header %s %s", name, fmt.Sprintf(format, args...))
}

type senderCtxKey struct{}

func withSender(ctx context.Context, s *meta.Sender) context.Context {
	return context.WithValue(ctx, senderCtxKey{}, s)
}

// senderFrom returns the sender the header interceptor put in the context.
func senderFrom(ctx context.Context) *meta.Sender {
	s, _ := ctx.Value(senderCtxKey{}).(*meta.Sender)
	return s
}
