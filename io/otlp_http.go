package io

import (
	"bytes"
	"context"
	"fmt"
	stdio "io"
	"net/http"
	"net/url"
	"strings"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// otlpHTTP exports over OTLP/HTTP with binary protobuf: POST {endpoint}/v1/traces and
// {endpoint}/v1/metrics, as OTEL_EXPORTER_OTLP_ENDPOINT defines them.
type otlpHTTP struct {
	tracesURL, metricsURL       string
	maskedTraces, maskedMetrics string // for errors and logs
	header                      http.Header
	gzipLevel                   int // 0: no compression
	codec                       *gzipCodec
	client                      *http.Client
	transport                   *http.Transport
}

// otlpResponseLimit bounds what is read of an answer: a partial success or an error.
const otlpResponseLimit = 64 << 10

func newOTLPHTTP(cfg OutputConfig, codec *gzipCodec) (*otlpHTTP, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(4, cfg.MaxInFlight)
	tr.TLSClientConfig = tc
	h := &otlpHTTP{
		tracesURL:  signalURL(u, "/v1/traces"),
		metricsURL: signalURL(u, "/v1/metrics"),
		header:     http.Header{},
		codec:      codec,
		client:     &http.Client{Transport: tr, Timeout: cfg.Timeout},
		transport:  tr,
	}
	h.maskedTraces, h.maskedMetrics = maskURL(h.tracesURL), maskURL(h.metricsURL)
	h.header.Set("User-Agent", userAgent())
	h.header.Set("Content-Type", "application/x-protobuf")
	if cfg.GzipEnabled() {
		h.gzipLevel = cfg.GzipLevel
		h.header.Set("Content-Encoding", "gzip")
	}
	for k, v := range cfg.Headers {
		h.header.Set(k, v)
	}
	return h, nil
}

// signalURL appends a signal's path to the base endpoint, keeping its query.
func signalURL(base *url.URL, path string) string {
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	return u.String()
}

func (h *otlpHTTP) exportTraces(ctx context.Context, req proto.Message) (exported, error) {
	var resp coltracepb.ExportTraceServiceResponse
	n, err := h.post(ctx, h.tracesURL, h.maskedTraces, req, &resp)
	ps := resp.GetPartialSuccess()
	return exported{bytes: n, rejected: ps.GetRejectedSpans(), msg: ps.GetErrorMessage()}, err
}

func (h *otlpHTTP) exportMetrics(ctx context.Context, req proto.Message) (exported, error) {
	var resp colmetricspb.ExportMetricsServiceResponse
	n, err := h.post(ctx, h.metricsURL, h.maskedMetrics, req, &resp)
	ps := resp.GetPartialSuccess()
	return exported{bytes: n, rejected: ps.GetRejectedDataPoints(), msg: ps.GetErrorMessage()}, err
}

// post sends one request and reads a protobuf answer into resp; it returns the body's
// bytes on the wire.
func (h *otlpHTTP) post(ctx context.Context, target, masked string, req, resp proto.Message) (int, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return 0, &sendError{class: classPermanent, msg: fmt.Sprintf("otlp: encode: %v", err)}
	}
	if h.gzipLevel > 0 {
		if body, err = h.codec.compress(body, h.gzipLevel); err != nil {
			return 0, &sendError{msg: err.Error()}
		}
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, &sendError{class: classPermanent, msg: fmt.Sprintf("POST %s: %v", masked, err)}
	}
	r.Header = h.header.Clone()
	res, err := h.client.Do(r)
	if err != nil {
		return 0, networkError(err, masked)
	}
	defer res.Body.Close()
	data, _ := stdio.ReadAll(stdio.LimitReader(res.Body, otlpResponseLimit))
	drain(res.Body)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return 0, otlpHTTPError(res, data)
	}
	// A server that answers JSON or nothing gets no partial-success count: the request
	// itself was taken.
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/x-protobuf") {
		_ = proto.Unmarshal(data, resp)
	}
	return len(body), nil
}

// otlpHTTPError classifies a refused request like the other HTTP outputs' (429, 502, 503,
// 504 and other 5xx retried with Retry-After, 400 and 413 split to find the bad rows, 401
// and 403 configuration errors), plus: 404, 405 and 415 mean the endpoint is not an OTLP
// receiver of this signal, a configuration error. The message is the google.rpc.Status
// the OTLP specification has servers send.
func otlpHTTPError(res *http.Response, body []byte) *sendError {
	msg := snippetOf(body)
	var st spb.Status
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/x-protobuf") && proto.Unmarshal(body, &st) == nil {
		msg = snippetOf([]byte(st.GetMessage()))
	}
	e := statusError(res, msg, time.Now())
	switch res.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		e.class, e.hint = classConfig, hintOTLPSignal
	case http.StatusUnauthorized, http.StatusForbidden:
		e.hint = hintOTLPAuth
	}
	return e
}

func (h *otlpHTTP) close() error {
	h.transport.CloseIdleConnections()
	return nil
}
