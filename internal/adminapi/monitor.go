package adminapi

import (
	"context"
	"time"

	"github.com/neofast/neoauthz/internal/registry"
)

// MonitorActor is the audit actor of changes the health monitor makes.
const MonitorActor = "system:health-monitor"

// MonitorHealth checks every active registered database each interval until ctx ends,
// recording health in the registry; a connection that reaches its max_consecutive_failures
// is deactivated by registry.Check, and the monitor then writes an audit row saying so.
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
	for _, c := range list {
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
		if !off {
			continue
		}
		deactivated = append(deactivated, c.Name)
		s.Log.Warn("database deactivated by the health monitor", "connection", c.Name)
		// registry.Check committed the deactivation itself; the audit row follows it.
		err = appendAuditNow(ctx, s.Admin, auditRecord{Actor: MonitorActor, Action: "database_connection.deactivate",
			TargetType: "database_connection", TargetID: c.ID,
			Before: map[string]any{"is_active": true},
			After: map[string]any{"is_active": false, "reason": "health check failed", "consecutive_failures": checked.ConsecutiveFailures,
				"max_consecutive_failures": checked.MaxConsecutiveFailures, "last_error": checked.LastError}})
		if err != nil {
			s.Log.Error("health monitor: audit append", "connection", c.Name, "err", err)
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
