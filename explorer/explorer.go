// Package explorer is apmkit's embedded explorer: the HTTP API over the local trace store
// (transactions, call trees, the service map, agents, the inspector's stat charts) and the
// web page that shows them, served on apmkit's HTTP listener with no other server and
// nothing fetched from elsewhere.
package explorer

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/apmkit/apmkit/internal/secret"
	"github.com/apmkit/apmkit/tracestore"
)

// Options configure the explorer.
type Options struct {
	// Token, or Username and Password, protect the explorer when set: a request needs
	// "Authorization: Bearer TOKEN", or basic auth with the user and password (or any user
	// and the token as password, so a browser can log in with the token).
	Token    secret.Secret
	Username string
	Password secret.Secret
	// Now is the clock of the default time range (tests set it).
	Now func() time.Time
}

// Explorer serves the API and the page.
type Explorer struct {
	store *tracestore.Store
	opts  Options
	mux   *http.ServeMux
}

//go:embed web
var web embed.FS

// New returns the explorer over store; a nil store (no local output) answers every API
// call with 503 and the page says why.
func New(store *tracestore.Store, opts Options) *Explorer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Explorer{store: store, opts: opts, mux: http.NewServeMux()}
	e.api("GET /api/v1/transactions", e.transactions)
	e.api("GET /api/v1/transactions/{trace_id}", e.trace)
	e.api("GET /api/v1/servicemap", e.serviceMap)
	e.api("GET /api/v1/agents", e.agents)
	e.api("GET /api/v1/inspector", e.inspector)
	e.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API: see /api/v1/transactions, /api/v1/transactions/{trace_id}, /api/v1/servicemap, /api/v1/agents, /api/v1/inspector")
	})
	assets, _ := fs.Sub(web, "web")
	e.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	for _, page := range []string{"GET /{$}", "GET /transaction/{trace_id}", "GET /servicemap", "GET /inspector", "GET /inspector/{agent}"} {
		e.mux.HandleFunc(page, e.page)
	}
	return e
}

// ServeHTTP checks the credentials, then serves.
func (e *Explorer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="apmkit explorer", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "the explorer needs credentials: Authorization: Bearer TOKEN, or basic auth ([http_api] token, username, password)")
		return
	}
	// Everything is served from here: no inline script, no other origin.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	e.mux.ServeHTTP(w, r)
}

// authorized compares in constant time, so the answer's timing does not reveal a prefix.
func (e *Explorer) authorized(r *http.Request) bool {
	token, user, pass := e.opts.Token.Reveal(), e.opts.Username, e.opts.Password.Reveal()
	if token == "" && user == "" {
		return true
	}
	equal := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && token != "" {
		return equal(bearer, token)
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	return (token != "" && equal(p, token)) || (user != "" && equal(u, user) && equal(p, pass))
}

// api registers a JSON handler; without a store it answers 503.
func (e *Explorer) api(pattern string, h func(w http.ResponseWriter, r *http.Request)) {
	e.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if e.store == nil {
			writeError(w, http.StatusServiceUnavailable, "the explorer has no trace store: io.explorer = false and no [[io.outputs]] of type \"local\"")
			return
		}
		h(w, r)
	})
}

// page serves the single page; its script reads the path (deep links).
func (e *Explorer) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, web, "web/index.html")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
