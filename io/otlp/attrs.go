package otlp

import (
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

// attrs builds an attribute list; empty string values are absent, as in line protocol.
type attrs []*commonpb.KeyValue

func (a *attrs) str(k, v string) {
	if v != "" {
		*a = append(*a, &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}})
	}
}

func (a *attrs) int(k string, v int64) {
	*a = append(*a, &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}})
}

func (a *attrs) bool(k string, v bool) {
	*a = append(*a, &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}})
}
