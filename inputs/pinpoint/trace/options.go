package trace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apmkit/apmkit/cache"
	"github.com/apmkit/apmkit/inputs/pinpoint/meta"
	"github.com/apmkit/apmkit/inputs/pinpoint/pb"
	"github.com/apmkit/apmkit/inputs/pinpoint/servicetype"
	"github.com/apmkit/apmkit/span"
)

// Metadata is what the assembler reads of the agents' metadata; *meta.Store implements it.
// Every lookup is scoped to the agent run that SENT the span (Pinpoint numbers its ids per
// agent run).
type Metadata interface {
	API(agent meta.AgentKey, id int32) (meta.API, bool)
	SQL(agent meta.AgentKey, id int32) (string, bool)
	SQLUID(agent meta.AgentKey, uid []byte) (string, bool)
	String(agent meta.AgentKey, id int32) (string, bool)
	Exceptions(agent meta.AgentKey, exceptionChainID int64) ([]*pb.PException, bool)
	Agent(agent meta.AgentKey) (meta.AgentRecord, bool)
}

var _ Metadata = (*meta.Store)(nil)

// EmitFunc receives one Pinpoint span (its entry span and events), the events of chunks
// whose span never came, or one piece of async work per call, so a pipeline can decide per
// trace; the span is the callee's from then on. It is called from several goroutines at
// once. An error is returned to the agent's call when the span came in with it, and counted
// when the span was released later (metadata or chunk waits).
type EmitFunc func(ctx context.Context, s *span.Span) error

// Options configure an Assembler. Zero values take the defaults documented per field.
type Options struct {
	// Store keeps pending chunks (and, from Stop to Start, span skeletons and the spans
	// still waiting for metadata); they survive a restart when it is on disk. Required.
	Store cache.Store
	// Meta resolves api, sql, string and exception ids and the agents' hostnames. Required.
	Meta Metadata
	// Types names service types and annotation keys; nil means servicetype.Builtin().
	Types *servicetype.Table
	// Hostname is the host tag of spans whose agent sent no PAgentInfo.
	Hostname string
	// ChunkWait is how long a sync chunk waits for its span before it is emitted as a
	// partial span; span skeletons (for chunks that arrive after their span) are kept for
	// twice as long. Default 2 minutes.
	ChunkWait time.Duration
	// MetadataWait is how long a span or chunk whose names cannot be resolved yet is held
	// for the metadata to arrive; after that it is emitted with placeholders such as
	// "api:12". One still held at Stop waits in Store and, after Start, MetadataWait
	// again. Default 5 s; negative disables holding.
	MetadataWait time.Duration
	// PendingTTL bounds how long a pending chunk (or a span kept waiting for metadata at
	// Stop) stays in Store, so those of an apmkit that was down for long do not stay
	// forever. Default 24 h, at least ChunkWait.
	PendingTTL time.Duration
	// DelMessage leaves out the message field (the JSON of the original span or event).
	DelMessage bool
	// RawHTTPURLTag makes the http_url tag the URL as it came (DataKit's tag, unbounded:
	// one series per id). By default the tag is the URL's template (/stock/42 ->
	// /stock/{id}) and the URL as it came is the http_url_raw field when it differs.
	RawHTTPURLTag bool
	// MaxHeldSpans and MaxHeldBytes cap the spans and chunks held in memory for metadata;
	// beyond them the oldest are emitted early with placeholders. Defaults 10,000 and
	// 64 MiB (bytes are an estimate of the held messages' memory).
	MaxHeldSpans int
	MaxHeldBytes int64
	// MaxPendingSpans and MaxPendingBytes cap the spans with chunks waiting in Store (the
	// in-memory index of them, and the bytes they take in Store); beyond them the chunks
	// waiting longest are emitted early as partial spans. Defaults 100,000 and 256 MiB.
	MaxPendingSpans int
	MaxPendingBytes int64
	// MaxSkeletonEvents caps the events remembered of one emitted span for chunks that
	// arrive after it; a bigger span keeps no skeleton (its late chunks become partial).
	// Default 10,000.
	MaxSkeletonEvents int
	// MaxSkeletonBytes caps the memory of those skeletons (about 12 bytes per event);
	// the oldest go first. Default 64 MiB.
	MaxSkeletonBytes int64
	// Emit receives the points. Required.
	Emit EmitFunc
	// Now is the clock; tests pass a fake one. Default time.Now.
	Now func() time.Time
	// Metrics registers the apmkit_pinpoint_trace_* metrics when not nil. Several
	// assemblers in one process need registerers wrapped with distinct labels.
	Metrics prometheus.Registerer
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultChunkWait         = 2 * time.Minute
	DefaultMetadataWait      = 5 * time.Second
	DefaultPendingTTL        = 24 * time.Hour
	DefaultMaxHeldSpans      = 10_000
	DefaultMaxHeldBytes      = 64 << 20
	DefaultMaxPendingSpans   = 100_000
	DefaultMaxPendingBytes   = 256 << 20
	DefaultMaxSkeletonEvents = 10_000
	DefaultMaxSkeletonBytes  = 64 << 20
)

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("trace: Options.Store is required"))
	}
	if o.Meta == nil {
		errs = append(errs, errors.New("trace: Options.Meta is required"))
	}
	if o.Emit == nil {
		errs = append(errs, errors.New("trace: Options.Emit is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	if o.Types == nil {
		o.Types = servicetype.Builtin()
	}
	o.ChunkWait = positive(o.ChunkWait, DefaultChunkWait)
	o.MetadataWait = orDefault(o.MetadataWait, DefaultMetadataWait)
	o.PendingTTL = max(positive(o.PendingTTL, DefaultPendingTTL), o.ChunkWait)
	o.MaxHeldSpans = positive(o.MaxHeldSpans, DefaultMaxHeldSpans)
	o.MaxHeldBytes = positive(o.MaxHeldBytes, DefaultMaxHeldBytes)
	o.MaxPendingSpans = positive(o.MaxPendingSpans, DefaultMaxPendingSpans)
	o.MaxPendingBytes = positive(o.MaxPendingBytes, DefaultMaxPendingBytes)
	o.MaxSkeletonEvents = positive(o.MaxSkeletonEvents, DefaultMaxSkeletonEvents)
	o.MaxSkeletonBytes = positive(o.MaxSkeletonBytes, DefaultMaxSkeletonBytes)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o, nil
}

// orDefault returns def for a zero v; a negative duration is kept (MetadataWait < 0
// means "do not hold").
func orDefault[T ~int | ~int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// positive returns def for a zero or negative count or size.
func positive[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
