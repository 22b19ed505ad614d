// Package demoapp is the application behind the proxies of `make run` and of the proxy tests:
// it answers every request with what it received (method, target, host and headers), so one
// can see what the proxy let through and which identity headers it added.
package demoapp

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Echo is what the application received.
type Echo struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// Handler answers with the request's Echo as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		h := r.Header.Clone()
		// The credential is the client's own; echoing it would only put it in terminals and
		// logs. Its scheme is enough to see that it passed.
		for i, v := range h.Values("Authorization") {
			scheme, _, _ := strings.Cut(v, " ")
			h["Authorization"][i] = scheme + " (redacted)"
		}
		_ = enc.Encode(Echo{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: h})
	})
}
