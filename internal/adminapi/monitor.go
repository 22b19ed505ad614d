package adminapi

import (
	"context"
	"time"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/registry"
)

// MonitorActor is the audit actor of changes the health monitor makes.
const MonitorActor = "system:health-monitor"

// MonitorHealth checks every active registered database each interval until ctx ends,
// recording health in the registry; a connection that reaches its max_consecutive_failures
// is deactivated by registry.Check, in one transaction with the audit row saying so.
func (s *Server) MonitorHealth(ctx context.Context, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.CheckDatabases(ctx, timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckDatabases runs one round of the health monitor and returns the connections it
// deactivated.
func (s *Server) CheckDatabases(ctx context.Context, timeout time.Duration) []string {
	list, err := s.Registry.ListConnections(ctx, registry.ConnectionFilter{ActiveOnly: true})
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Error("health monitor: list connections", "err", err)
		}
		return nil
	}
	var deactivated []string
	ctx = audit.WithActor(ctx, MonitorActor, "")
	for _, c := range list {
		// registry.Check commits a deactivation together with its audit row.
		checked, off, err := s.Registry.Check(ctx, c, timeout)
		if err != nil {
			if ctx.Err() == nil {
				s.Log.Error("health monitor: check", "connection", c.Name, "err", err)
			}
			continue
		}
		if !checked.IsHealthy {
			s.Log.Warn("database unhealthy", "connection", c.Name, "failures", checked.ConsecutiveFailures, "error", deref(checked.LastError))
		}
		if off {
			deactivated = append(deactivated, c.Name)
			s.Log.Warn("database deactivated by the health monitor", "connection", c.Name)
		}
	}
	return deactivated
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
