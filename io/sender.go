package io

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apmkit/apmkit/internal/secret"
)

// sender delivers one batch to one destination, once. Retries, spilling and counting are
// the outputWorker's job, so every sender gets them the same way.
type sender interface {
	// send delivers the batch, or fails with a classified error.
	send(ctx context.Context, b *batch) (sendResult, error)
	// describe says where it writes, secrets masked: "dataway: https://host?token=tkn_****abcd".
	describe() string
	// location is the masked URL or folder, for Stats.
	location() string
	close() error
}

// sendResult is what a delivered batch cost and lost: the bytes put on the wire (after
// compression where the sender knows it), and the points it could not deliver although
// the request succeeded (an otlp output: rows it cannot map, data the server rejected as
// an OTLP partial success). The worker counts those as dropped, the rest as sent.
type sendResult struct {
	bytes int
	lost  []loss
}

// loss is points a delivered batch lost, with why.
type loss struct {
	points int
	reason dropReason
	err    error
}

// lostPoints is the number of points the result lost.
func (r sendResult) lostPoints() int {
	n := 0
	for _, l := range r.lost {
		n += l.points
	}
	return n
}

// preparer is a sender that sets its destination up before its first batch (InfluxDB 1.x:
// the database). A failure is logged; delivery goes on, and the writes' answers tell.
type preparer interface {
	prepare(ctx context.Context) error
}

// errClass says what a failed send means for the batch.
type errClass int

const (
	// classRetry: the output is down or busy (network error, timeout, 408, 429, 5xx). The
	// batch is retried, then spilled, and delivered once the output is back.
	classRetry errClass = iota
	// classConfig: the output works but refuses us (401, 403, database, retention policy or
	// bucket not found). Retrying soon will not help and dropping would lose data the user
	// wants once the config is fixed: the batch is spilled and retried slowly.
	classConfig
	// classMalformed: the server refused (some of) the body (400, 413, 422 partial write).
	// The batch is split and re-sent, so only the lines it refuses alone are dropped.
	classMalformed
	// classPermanent: any other 4xx: the same request will always fail; dropped.
	classPermanent
)

// sendError is a failed send, classified.
type sendError struct {
	class      errClass
	status     int           // HTTP status, 0 for network and I/O errors
	retryAfter time.Duration // the server's Retry-After, 0 when absent
	server     string        // the server's own message, "" for network and I/O errors
	createDB   bool          // the answer to CREATE DATABASE, not to a write
	hint       string        // what to change, for a configuration error the sender understood
	msg        string
}

func (e *sendError) Error() string { return e.msg }

// classOf is classRetry for errors that are not a *sendError: keeping a batch is the safe
// default.
func classOf(err error) errClass {
	var se *sendError
	if errors.As(err, &se) {
		return se.class
	}
	return classRetry
}

func retryAfterOf(err error) time.Duration {
	var se *sendError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

func statusOf(err error) int {
	var se *sendError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

// statusError classifies an HTTP answer; message is the server's own text (see
// serverMessage).
func statusError(resp *http.Response, message string, now time.Time) *sendError {
	e := &sendError{class: classifyStatus(resp.StatusCode, message), status: resp.StatusCode, server: message}
	e.msg = fmt.Sprintf("HTTP %s", resp.Status)
	if message != "" {
		e.msg += ": " + message
	}
	if e.class == classRetry {
		e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// classifyStatus: 408, 429 and 5xx are worth retrying (the server is busy or briefly
// broken); a missing database is a configuration error whatever the status (InfluxDB 1.x
// answers 500 for a missing retention policy).
func classifyStatus(status int, message string) errClass {
	switch {
	case missingTarget(message) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return classConfig
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		return classMalformed
	case status == http.StatusUnprocessableEntity && strings.Contains(message, "partial write"):
		// InfluxDB 2.x: some points were refused (beyond retention...), the others written.
		return classMalformed
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return classRetry
	}
	return classPermanent
}

// missingTarget recognises InfluxDB's "database not found", "retention policy not found"
// (1.x) and `bucket "x" not found`, `organization name "x" not found` (2.x). Messages about
// lines start otherwise ("partial write:", "unable to parse").
func missingTarget(message string) bool {
	m := strings.ToLower(message)
	if strings.HasPrefix(m, "database not found") || strings.HasPrefix(m, "retention policy not found") {
		return true
	}
	return (strings.HasPrefix(m, "bucket ") || strings.HasPrefix(m, "organization ")) && strings.HasSuffix(m, " not found")
}

// missingDatabase is InfluxDB 1.x's answer to a write into a database that does not exist.
func missingDatabase(err error) bool {
	var se *sendError
	return errors.As(err, &se) && strings.HasPrefix(strings.ToLower(se.server), "database not found")
}

// configHint says what to change for a configuration error, for the log.
func configHint(err error, cfg OutputConfig) string {
	var se *sendError
	if !errors.As(err, &se) {
		return ""
	}
	if se.hint != "" {
		return se.hint
	}
	msg := strings.ToLower(se.server)
	switch {
	case se.createDB && (se.status == http.StatusUnauthorized || se.status == http.StatusForbidden):
		return "CREATE DATABASE needs an admin user: create the database and set skip_database_creation = true, or use an admin user"
	case missingDatabase(err) && cfg.SkipDatabaseCreation:
		return "create the database (skip_database_creation = true: apmkit does not)"
	case missingDatabase(err):
		return "create the database, or let apmkit create it: that needs an admin user"
	case strings.HasPrefix(msg, "retention policy"):
		return "create the retention policy, or fix retention_policy"
	case strings.HasPrefix(msg, "bucket") || strings.HasPrefix(msg, "organization"):
		return "create the bucket, or fix org and bucket"
	case se.status == http.StatusUnauthorized:
		return "check the credentials: username and password (influxdb), token (influxdb2, dataway)"
	case se.status == http.StatusForbidden:
		return "the credentials lack the right to write there"
	}
	return ""
}

// serverMessage extracts the server's explanation: the "error" (InfluxDB 1.x, DataWay) or
// "message" (InfluxDB 2.x) of a JSON body, else InfluxDB's X-Influxdb-Error header (whole
// when the body was cut), else the body itself; short, one line.
func serverMessage(body []byte, header http.Header) string {
	var j struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &j) == nil {
		if j.Error != "" {
			return snippetOf([]byte(j.Error))
		}
		if j.Message != "" {
			return snippetOf([]byte(j.Message))
		}
	}
	if text := snippetOf([]byte(header.Get("X-Influxdb-Error"))); text != "" {
		return text
	}
	return snippetOf(body)
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

// maskURL hides secrets (user-info password, token-like query values) for logs and Stats;
// it is secret.URL, the masker `apmkit config` uses too.
func maskURL(raw string) string { return secret.URL(raw) }
