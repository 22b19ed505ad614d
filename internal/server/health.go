package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// healthTimeout bounds one /health request: a load balancer's probe must get an answer even
// when a dependency hangs.
const healthTimeout = 2 * time.Second

// Overall /health statuses.
const (
	healthOK          = "ok"          // ready, every dependency ok or disabled
	healthDegraded    = "degraded"    // ready, but some dependency is degraded or down (e.g. Redis: L1 + PostgreSQL serve)
	healthUnavailable = "unavailable" // cannot decide, not yet serving, or shutting down
)

type healthBody struct {
	Status       string                    `json:"status"`
	Serving      bool                      `json:"serving"`
	Dependencies map[string]dependencyJSON `json:"dependencies"`
}

type dependencyJSON struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// healthHTTP serves /health: the overall status and each dependency's status and latency. It
// answers 200 when the pdp can decide and is serving (ready, and not shutting down), 503
// otherwise, so the same endpoint works as a readiness probe.
func (s *Server) healthHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()

	deps := s.dec.Health(ctx)
	body := healthBody{
		Serving:      s.serving.Load() && !s.shuttingDown.Load(),
		Dependencies: make(map[string]dependencyJSON, len(deps)),
	}
	degraded := false
	for name, d := range deps {
		body.Dependencies[name] = dependencyJSON{
			Status:    d.Status,
			LatencyMS: float64(d.Latency.Microseconds()) / 1000,
			Error:     d.Error,
		}
		if d.Status != "ok" && d.Status != "disabled" {
			degraded = true
		}
	}
	code := http.StatusOK
	switch {
	case !body.Serving || s.dec.Ready(ctx) != nil:
		body.Status, code = healthUnavailable, http.StatusServiceUnavailable
	case degraded:
		body.Status = healthDegraded
	default:
		body.Status = healthOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
