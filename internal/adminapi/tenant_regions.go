package adminapi

import (
	"errors"
	"slices"

	"github.com/neofast/neoauthz/internal/decisionlog"
	"github.com/neofast/neoauthz/internal/registry"
)

// TenantRegions is where a tenant's data lives: the answer of GET /tenants/{id}/regions. An
// operator limits pdps to regions (-regions) and checks data residency with it.
type TenantRegions struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	// Region is the tenant's own region (where it was provisioned).
	Region string `json:"region"`
	// Regions are the distinct regions of Region and of every database below, in order: a
	// pdp must serve all of them to decide for the tenant.
	Regions []string `json:"regions"`
	// Databases are the registered databases holding the tenant's data.
	Databases []TenantDatabase `json:"databases"`
}

// TenantDatabase is one registered database holding a tenant's data.
type TenantDatabase struct {
	Region       string `json:"region"`
	ConnectionID string `json:"connection_id"`
	Connection   string `json:"connection"`
	Type         string `json:"type"`
	// Database is the database name on the connection's server (the tenant's own for a
	// database deployment); Schema the tenant's schema in it ("" for the decision log).
	Database string `json:"database"`
	Schema   string `json:"schema,omitempty"`
	// Holds is what of the tenant's is there: "rbac" (its schema: users, roles, grants) or
	// "decision_log" (the pdps' decisions about it).
	Holds string `json:"holds"`
}

// What a TenantDatabase holds.
const (
	holdsRBAC        = "rbac"
	holdsDecisionLog = "decision_log"
)

func (s *Server) tenantRegions(c *call) error {
	t, err := s.Tenants.Get(c.ctx(), c.tenant.ID)
	if err != nil {
		return err
	}
	out := TenantRegions{TenantID: t.ID, Slug: t.Slug, Region: t.Region, Regions: []string{t.Region}, Databases: []TenantDatabase{}}
	add := func(conn registry.Connection, database, schema, holds string) {
		out.Databases = append(out.Databases, TenantDatabase{Region: conn.RegionCode, ConnectionID: conn.ID, Connection: conn.Name,
			Type: conn.Type, Database: database, Schema: schema, Holds: holds})
		out.Regions = append(out.Regions, conn.RegionCode)
	}
	if t.ConnectionID != nil {
		conn, err := s.Registry.GetConnection(c.ctx(), *t.ConnectionID)
		if err != nil {
			return err
		}
		database := conn.Database
		if t.DatabaseName != nil {
			database = *t.DatabaseName
		}
		add(conn, database, t.SchemaName, holdsRBAC)
	}
	// Decisions about the tenant go to its region's analytics database (decisionlog).
	switch conn, err := decisionlog.Database(c.ctx(), s.Registry, t.Region); {
	case err == nil:
		add(conn, conn.Database, "", holdsDecisionLog)
	case !errors.Is(err, decisionlog.ErrNotFound):
		return err
	}
	slices.Sort(out.Regions)
	out.Regions = slices.Compact(out.Regions)
	return c.ok(200, out, nil)
}
