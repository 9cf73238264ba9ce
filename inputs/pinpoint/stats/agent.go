package stats

import (
	"strconv"
	"strings"
	"time"

	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/point"
)

const (
	agentTagCap   = 10 // see agentInfoTags
	agentFieldCap = 7  // see agentInfoFields
)

// AgentInfo converts a PAgentInfo into a pinpoint_agent point: an agent start, or an agent
// end when endTimestamp > 0 (then end_timestamp and end_status are set). A start is
// timestamped with the agent run's start time (the `starttime` header), an end with its end
// time, never with the time apmkit got the info: agents send the same info again on every
// reconnect, and it must land on the run's one row (InfluxDB keeps one per series and
// time), not add a row per reconnect, restart or replica. It returns nil only when sender
// is nil: without it the point would name no agent.
func (c *Converter) AgentInfo(sender *meta.Sender, info *pb.PAgentInfo) *point.Point {
	if sender == nil {
		return nil
	}
	at := sender.StartTime
	if end := info.GetEndTimestamp(); end > 0 {
		at = end
	}
	p := &point.Point{
		Name:   MeasurementAgent,
		Time:   at * int64(time.Millisecond),
		Tags:   make([]point.Tag, 0, agentTagCap),
		Fields: make([]point.Field, 0, agentFieldCap),
	}
	p.Tags = c.agentInfoTags(p.Tags, sender, info)
	p.Fields = agentInfoFields(p.Fields, sender, info)
	return p
}

// agentInfoTags appends the tags in sorted key order. The tags describe the agent from its
// own info, not from the store: this is the info being stored.
func (c *Converter) agentInfoTags(tags []point.Tag, sender *meta.Sender, info *pb.PAgentInfo) []point.Tag {
	vmVersion := info.GetVmVersion()
	if vmVersion == "" {
		vmVersion = info.GetJvmInfo().GetVmVersion()
	}
	tags = appendTag(tags, "agentVersion", info.GetAgentVersion())
	tags = appendTag(tags, "agent_id", sender.AgentID)
	tags = appendTag(tags, "agent_name", sender.AgentName)
	if info != nil {
		tags = appendTag(tags, "container", strconv.FormatBool(info.GetContainer()))
	}
	tags = appendTag(tags, "host", info.GetHostname())
	tags = appendTag(tags, "hostname", info.GetHostname())
	tags = appendTag(tags, "ip", info.GetIp())
	tags = appendTag(tags, "service", sender.ApplicationName)
	if code := agentServiceType(sender, info); code != 0 {
		tags = appendTag(tags, "service_type", c.types.Type(code).Name)
	}
	return appendTag(tags, "vm_version", vmVersion)
}

// agentServiceType is the info's serviceType, else the `servicetype` header (0 is not a
// Pinpoint type: proto3 cannot tell it from "not sent").
func agentServiceType(sender *meta.Sender, info *pb.PAgentInfo) int32 {
	if code := info.GetServiceType(); code != 0 {
		return code
	}
	return sender.ServiceType
}

// agentInfoFields appends the fields. String fields are made valid UTF-8: decoding checks
// proto3 strings, but a hand-built PAgentInfo must not make the point unwritable.
func agentInfoFields(f []point.Field, sender *meta.Sender, info *pb.PAgentInfo) []point.Field {
	// The `starttime` header is required, so every agent point has at least this field.
	f = append(f, point.Int("start_time", sender.StartTime))
	if pid := info.GetPid(); pid > 0 {
		f = append(f, point.Int("pid", int64(pid)))
	}
	if ports := info.GetPorts(); ports != "" {
		f = append(f, point.String("ports", strings.ToValidUTF8(ports, "\uFFFD")))
	}
	if end := info.GetEndTimestamp(); end > 0 {
		f = append(f, point.Int("end_timestamp", end), point.Int("end_status", int64(info.GetEndStatus())))
	}
	if serverInfo := info.GetServerMetaData().GetServerInfo(); serverInfo != "" {
		f = append(f, point.String("server_info", strings.ToValidUTF8(serverInfo, "\uFFFD")))
	}
	if jvm := info.GetJvmInfo(); jvm != nil {
		f = append(f, point.String("jvm_gc_type", gcTypeName(jvm.GetGcType())))
	}
	return f
}
