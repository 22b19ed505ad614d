package adminapi

import (
	"context"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is the body of /health.
type Health struct {
	Status       string                      `json:"status"` // ok or unavailable
	Dependencies map[string]DependencyHealth `json:"dependencies"`
}

// DependencyHealth is one dependency's state.
type DependencyHealth struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

func (s *Server) health(c *call) error {
	ctx, cancel := context.WithTimeout(c.ctx(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Admin.Ping(ctx)
	dep := DependencyHealth{Status: "ok", LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	h := Health{Status: "ok", Dependencies: map[string]DependencyHealth{"admin_database": dep}}
	status := http.StatusOK
	if err != nil {
		dep.Status, dep.Error = "unavailable", "admin database did not answer"
		h.Status, h.Dependencies["admin_database"], status = "unavailable", dep, http.StatusServiceUnavailable
	}
	return c.ok(status, h, nil)
}

func (s *Server) metricsHandler(c *call) error {
	c.written = true
	promhttp.HandlerFor(s.promReg, promhttp.HandlerOpts{}).ServeHTTP(c.w, c.r)
	return nil
}

func (s *Server) openAPIHandler(c *call) error {
	c.written = true
	c.w.Header().Set("Content-Type", "application/json")
	_, _ = c.w.Write(s.openapi)
	return nil
}

func (s *Server) docsHandler(c *call) error {
	c.written = true
	c.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// No scripts or outside assets: the page is the route table, nothing to fetch or run.
	c.w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = c.w.Write(s.docs)
	return nil
}

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>neoauthz admin API</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}code{font-size:.95em}</style></head>
<body><h1>neoauthz admin API</h1>
<p>Every response is <code>{"success", "data", "meta"}</code> or <code>{"success": false, "error": {"code", "message", "details"}}</code>.
Authenticate with a platform-realm bearer token. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<table><tr><th>Method</th><th>Path</th><th>Permission</th><th>Summary</th></tr>
{{range .}}<tr><td>{{.Method}}</td><td><code>{{.Path}}</code></td><td>{{.Perm}}</td><td>{{.Summary}}</td></tr>
{{end}}</table></body></html>
`))

func (s *Server) buildDocs() []byte {
	type row struct{ Method, Path, Perm, Summary string }
	rows := make([]row, 0, len(s.table))
	for _, rt := range s.table {
		rows = append(rows, row{rt.Method, rt.Path, permissionText(&rt), rt.Summary})
	}
	var b strings.Builder
	_ = docsTemplate.Execute(&b, rows)
	return []byte(b.String())
}

// permissionText describes a route's permission for people.
func permissionText(rt *route) string {
	switch {
	case rt.public():
		return "public"
	case rt.resourceCheck():
		return rt.Permission + " on tenant {" + rt.Tenant + "}"
	default:
		return rt.Permission
	}
}
