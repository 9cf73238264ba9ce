package io

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// sender delivers one batch to one destination, once. Retries, spilling and counting are
// the outputWorker's job, so every sender gets them the same way.
type sender interface {
	// send returns the bytes put on the wire (after compression).
	send(ctx context.Context, b *batch) (int, error)
	// describe says where it writes, secrets masked: "dataway: https://host?token=tkn_****abcd".
	describe() string
	// location is the masked URL or folder, for Stats.
	location() string
	close() error
}

// sendError classifies a failed send. Permanent errors (4xx other than 408/429) mean the
// same request can never succeed: the batch is dropped and counted, not retried.
type sendError struct {
	permanent  bool
	status     int           // HTTP status, 0 for network and I/O errors
	retryAfter time.Duration // the server's Retry-After, 0 when absent
	msg        string
}

func (e *sendError) Error() string { return e.msg }

func isPermanent(err error) bool {
	var se *sendError
	return errors.As(err, &se) && se.permanent
}

func retryAfterOf(err error) time.Duration {
	var se *sendError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

// statusError classifies an HTTP answer: 408, 429 and 5xx are worth retrying (the server
// is busy or briefly broken); any other non-2xx will fail the same way again.
func statusError(resp *http.Response, snippet string, now time.Time) *sendError {
	retryable := resp.StatusCode == http.StatusRequestTimeout ||
		resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode >= 500
	e := &sendError{permanent: !retryable, status: resp.StatusCode}
	e.msg = fmt.Sprintf("HTTP %s", resp.Status)
	if snippet != "" {
		e.msg += ": " + snippet
	}
	if retryable {
		e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3); 0 if absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// networkError hides the request URL that *url.Error prints: it may carry a token.
func networkError(err error, maskedURL string) *sendError {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &sendError{msg: fmt.Sprintf("POST %s: %v", maskedURL, err)}
}

// snippetOf makes a response body loggable: short, valid UTF-8, one line.
func snippetOf(body []byte) string {
	const max = 256
	s := strings.ToValidUTF8(string(body), "?")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// maskURL hides secrets (user-info password, token-like query values) for logs and Stats.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "****")
		}
	}
	q := u.Query()
	for k, vs := range q {
		if !secretQueryKey(k) {
			continue
		}
		for i := range vs {
			vs[i] = maskSecret(vs[i])
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	s := u.String()
	// Keep the stars readable: they are not data that needs escaping.
	return strings.ReplaceAll(s, "%2A", "*")
}

func secretQueryKey(k string) bool {
	switch strings.ToLower(k) {
	case "token", "password", "p", "secret", "api_key", "apikey", "access_token":
		return true
	}
	return false
}

// maskSecret keeps a recognisable prefix (tkn_) and the last 4 characters of long secrets.
func maskSecret(s string) string {
	if len(s) < 12 {
		return "****"
	}
	return s[:4] + "****" + s[len(s)-4:]
}
