package adminapi

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/registry"
)

// CreateRegion is the body of POST /regions.
type CreateRegion struct {
	Code          string `json:"code"`
	Name          string `json:"name"`
	DataResidency bool   `json:"data_residency"`
}

// Registry writes run through registry.Store.In(tx), in the transaction that appends their
// audit row.
func (s *Server) createRegion(c *call) error {
	var req CreateRegion
	if err := c.decode(&req); err != nil {
		return err
	}
	var r registry.Region
	v, err := s.adminWrite(c, func(tx pgx.Tx) (rec auditRecord, err error) {
		r, err = s.Registry.In(tx).CreateRegion(c.ctx(), registry.Region{Code: req.Code, Name: req.Name, DataResidency: req.DataResidency})
		return auditRecord{Action: "region.create", TargetType: "region", TargetID: r.Code, After: r}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, r, map[string]any{"version": v})
}

func (s *Server) listRegions(c *call) error {
	list, err := s.Registry.ListRegions(c.ctx())
	if err != nil {
		return err
	}
	if list == nil {
		list = []registry.Region{}
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

// CreateConnection is the body of POST /database-connections. The password is sealed by the
// registry and never returned or logged.
type CreateConnection struct {
	Name                   string `json:"name"`
	Type                   string `json:"type"`
	Region                 string `json:"region"`
	Host                   string `json:"host"`
	Port                   int    `json:"port"`
	Database               string `json:"database"`
	Username               string `json:"username"`
	Password               string `json:"password"`
	TLSMode                string `json:"tls_mode"`
	PoolMin                int    `json:"pool_min"`
	PoolMax                int    `json:"pool_max"`
	MaxConsecutiveFailures int    `json:"max_consecutive_failures"`
	// Primary is, for a replica, the name or id of the primary it streams from.
	Primary string `json:"primary"`
}

func (s *Server) registerConnection(c *call) error {
	var req CreateConnection
	if err := c.decode(&req); err != nil {
		return err
	}
	var conn registry.Connection
	v, err := s.adminWrite(c, func(tx pgx.Tx) (rec auditRecord, err error) {
		conn, err = s.Registry.In(tx).RegisterConnection(c.ctx(), registry.Connection{
			Name: req.Name, Type: req.Type, RegionCode: req.Region, Host: req.Host, Port: req.Port, Database: req.Database,
			Username: req.Username, Password: req.Password, TLSMode: req.TLSMode, PoolMin: req.PoolMin, PoolMax: req.PoolMax,
			MaxConsecutiveFailures: req.MaxConsecutiveFailures, PrimaryID: req.Primary,
		})
		return auditRecord{Action: "database_connection.register", TargetType: "database_connection", TargetID: conn.ID, After: conn}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, conn, map[string]any{"version": v})
}

func (s *Server) listConnections(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	f := registry.ConnectionFilter{Type: q.Get("type"), RegionCode: q.Get("region")}
	if v := q.Get("active"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errValidation("active", "must be true or false")
		}
		f.ActiveOnly = b
	}
	list, err := s.Registry.ListConnections(c.ctx(), f)
	if err != nil {
		return err
	}
	// The registry holds tens of databases, not thousands: paging in memory is enough.
	total := len(list)
	lo, hi := min((page-1)*size, total), min(page*size, total)
	out := list[lo:hi]
	if out == nil {
		out = []registry.Connection{}
	}
	return c.ok(200, out, pageMeta(page, size, total))
}

func (s *Server) getConnection(c *call) error {
	conn, err := s.Registry.GetConnection(c.ctx(), c.r.PathValue("id"))
	if err != nil {
		return err
	}
	return c.ok(200, conn, nil)
}

// PatchConnection is the body of PATCH /database-connections/{id}.
type PatchConnection struct {
	IsActive               *bool `json:"is_active"`
	MaxConsecutiveFailures *int  `json:"max_consecutive_failures"`
}

func (s *Server) patchConnection(c *call) error {
	var p PatchConnection
	if err := c.decode(&p); err != nil {
		return err
	}
	fe := fieldErrors{}
	if p.MaxConsecutiveFailures != nil && *p.MaxConsecutiveFailures < 1 {
		fe.add("max_consecutive_failures", "must be at least 1")
	}
	if p.IsActive == nil && p.MaxConsecutiveFailures == nil {
		fe.add("is_active", "give is_active and/or max_consecutive_failures")
	}
	if err := fe.err(); err != nil {
		return err
	}
	before, err := s.Registry.GetConnection(c.ctx(), c.r.PathValue("id"))
	if err != nil {
		return err
	}
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var active bool
		var maxF, failures int
		// Reactivating starts the failure count afresh, or the next failed check would
		// deactivate it again at once.
		err := tx.QueryRow(c.ctx(), `UPDATE admin.database_connections SET
				is_active = coalesce($2, is_active),
				max_consecutive_failures = coalesce($3, max_consecutive_failures),
				consecutive_failures = CASE WHEN $2 AND NOT is_active THEN 0 ELSE consecutive_failures END,
				updated_at = now()
			WHERE id = $1 RETURNING is_active, max_consecutive_failures, consecutive_failures`,
			before.ID, p.IsActive, p.MaxConsecutiveFailures).Scan(&active, &maxF, &failures)
		return auditRecord{Action: "database_connection.update", TargetType: "database_connection", TargetID: before.ID,
			Before: map[string]any{"is_active": before.IsActive, "max_consecutive_failures": before.MaxConsecutiveFailures},
			After:  map[string]any{"is_active": active, "max_consecutive_failures": maxF}}, err
	})
	if err != nil {
		return err
	}
	after, err := s.Registry.GetConnection(c.ctx(), before.ID)
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deactivateConnection(c *call) error {
	var conn registry.Connection
	v, err := s.adminWrite(c, func(tx pgx.Tx) (rec auditRecord, err error) {
		conn, err = s.Registry.In(tx).Deactivate(c.ctx(), c.r.PathValue("id"))
		return auditRecord{Action: "database_connection.deactivate", TargetType: "database_connection", TargetID: conn.ID,
			After: map[string]any{"is_active": false, "reason": "requested"}}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, conn, map[string]any{"version": v})
}

func (s *Server) checkConnection(c *call) error {
	conn, err := s.Registry.GetConnection(c.ctx(), c.r.PathValue("id"))
	if err != nil {
		return err
	}
	var checked registry.Connection
	var deactivated bool
	v, err := s.adminWrite(c, func(tx pgx.Tx) (rec auditRecord, err error) {
		checked, deactivated, err = s.Registry.In(tx).Check(audit.WithActor(c.ctx(), c.actor(), c.requestID), conn, 5*time.Second)
		return auditRecord{Action: "database_connection.health_check", TargetType: "database_connection", TargetID: conn.ID,
			After: map[string]any{"is_healthy": checked.IsHealthy, "consecutive_failures": checked.ConsecutiveFailures,
				"is_active": checked.IsActive, "deactivated": deactivated, "error": checked.LastError}}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, checked, map[string]any{"version": v, "deactivated": deactivated})
}
