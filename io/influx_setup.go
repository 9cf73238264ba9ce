package io

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdio "io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// databaseCreator sends InfluxDB 1.x's CREATE DATABASE "<db>" (POST {url}/query, q=, with
// the writes' headers and basic auth). InfluxDB answers it without error when the database
// exists, so it needs no SHOW DATABASES first; it needs admin rights, hence
// skip_database_creation. VictoriaMetrics answers /query with an empty result: harmless.
type databaseCreator struct {
	endpoint string // {url}/query, the url's own query (u=, p=) kept
	form     string // q=CREATE DATABASE "<db>", form-encoded
	stmt     string // for messages
}

func newDatabaseCreator(cfg OutputConfig) *databaseCreator {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil // Validate rejects such a URL first
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/query"
	u.RawPath = ""
	stmt := "CREATE DATABASE " + quoteIdent(cfg.Database)
	return &databaseCreator{endpoint: u.String(), form: url.Values{"q": {stmt}}.Encode(), stmt: stmt}
}

// quoteIdent quotes an InfluxQL identifier: any database name is then valid.
func quoteIdent(name string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
}

// create runs the statement; errors are *sendError, classified like a write's answer.
func (c *databaseCreator) create(ctx context.Context, s *httpSender) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(c.form))
	if err != nil {
		return &sendError{class: classPermanent, msg: fmt.Sprintf("%s: %v", c.stmt, err)}
	}
	req.Header = s.header.Clone()
	req.Header.Del("Content-Encoding") // the form is sent as is
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.client.Do(req)
	if err != nil {
		return c.wrap(networkError(err, s.masked))
	}
	defer resp.Body.Close()
	body, _ := stdio.ReadAll(stdio.LimitReader(resp.Body, 64<<10))
	drain(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.wrap(statusError(resp, serverMessage(body, resp.Header), time.Now()))
	}
	if msg := statementError(body); msg != "" {
		// InfluxDB reports a refused statement inside a 200 answer.
		return c.wrap(&sendError{class: classConfig, status: resp.StatusCode, server: msg, msg: "HTTP " + resp.Status + ": " + msg})
	}
	return nil
}

// wrap names the statement and the URL in the message, keeping the classification.
func (c *databaseCreator) wrap(err error) error {
	var se *sendError
	if !errors.As(err, &se) {
		return err
	}
	out := *se
	out.msg = c.stmt + ": " + se.msg
	out.createDB = true
	return &out
}

// statementError is the first error of a /query answer: {"results":[{"error":"..."}]}.
func statementError(body []byte) string {
	var r struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	if r.Error != "" {
		return snippetOf([]byte(r.Error))
	}
	for _, res := range r.Results {
		if res.Error != "" {
			return snippetOf([]byte(res.Error))
		}
	}
	return ""
}

// withCreateFailure adds why the missing database could not be created to the write's
// error, which stays a configuration error.
func withCreateFailure(err, createErr error) error {
	var se *sendError
	if !errors.As(err, &se) {
		return err
	}
	out := *se
	out.msg = fmt.Sprintf("%s (apmkit could not create it: %v)", se.msg, createErr)
	return &out
}
