package tenancy

import (
	"context"
	"errors"
	"slices"

	"github.com/neofast/neoauthz/internal/registry"
)

// Residency is where a tenant's data lives. An operator limits pdps to regions (the pdp's
// -regions) and checks data residency with it.
type Residency struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	// Region is the tenant's own region (where it was provisioned).
	Region string `json:"region"`
	// Regions are the distinct regions of Region and of every database below, in order: a
	// pdp must serve all of them to decide for the tenant.
	Regions []string `json:"regions"`
	// Databases are the registered databases holding the tenant's data.
	Databases []StoredIn `json:"databases"`
}

// StoredIn is one registered database holding a tenant's data.
type StoredIn struct {
	Region       string `json:"region"`
	ConnectionID string `json:"connection_id"`
	Connection   string `json:"connection"`
	Type         string `json:"type"`
	// Database is the database name on the connection's server (the tenant's own for a
	// database deployment); Schema the tenant's schema in it ("" for the decision log).
	Database string `json:"database"`
	Schema   string `json:"schema,omitempty"`
	// Holds is what of the tenant's is there: HoldsRBAC or HoldsDecisionLog.
	Holds string `json:"holds"`
}

// What a StoredIn holds.
const (
	// HoldsRBAC is the tenant's schema: users, teams, roles, grants.
	HoldsRBAC = "rbac"
	// HoldsRBACReplica is a streaming replica of the tenant's schema's database: a copy of
	// the same data, which pdps may read cache fills from (-replica-fills).
	HoldsRBACReplica = "rbac_replica"
	// HoldsDecisionLog is the pdps' decisions about the tenant (its region's analytics
	// database, see decisionlog).
	HoldsDecisionLog = "decision_log"
)

// Residency returns where the tenant idOrSlug's data lives: the database its schema is on and
// its region's decision-log database, and the active replicas of its schema's database. It reads the admin database only.
func (s *Service) Residency(ctx context.Context, idOrSlug string) (Residency, error) {
	t, err := s.Get(ctx, idOrSlug)
	if err != nil {
		return Residency{}, err
	}
	out := Residency{TenantID: t.ID, Slug: t.Slug, Region: t.Region, Regions: []string{t.Region}, Databases: []StoredIn{}}
	add := func(conn registry.Connection, database, schema, holds string) {
		out.Databases = append(out.Databases, StoredIn{Region: conn.RegionCode, ConnectionID: conn.ID, Connection: conn.Name,
			Type: conn.Type, Database: database, Schema: schema, Holds: holds})
		out.Regions = append(out.Regions, conn.RegionCode)
	}
	if t.ConnectionID != nil {
		conn, err := s.Registry.GetConnection(ctx, *t.ConnectionID)
		if err != nil {
			return Residency{}, err
		}
		database := conn.Database
		if t.DatabaseName != nil {
			database = *t.DatabaseName
		}
		add(conn, database, t.SchemaName, HoldsRBAC)
		// A replica holds a copy of the same database (the registry keeps it in the
		// primary's region, but list it: an operator audits residency from this answer).
		replicas, err := s.Registry.Replicas(ctx, conn.ID)
		if err != nil {
			return Residency{}, err
		}
		for _, r := range replicas {
			add(r, database, t.SchemaName, HoldsRBACReplica)
		}
	}
	// Decisions about the tenant go to its region's analytics database (decisionlog).
	switch conn, err := s.Registry.AnalyticsDatabase(ctx, t.Region); {
	case err == nil:
		add(conn, conn.Database, "", HoldsDecisionLog)
	case !errors.Is(err, registry.ErrNotFound):
		return Residency{}, err
	}
	slices.Sort(out.Regions)
	out.Regions = slices.Compact(out.Regions)
	return out, nil
}
