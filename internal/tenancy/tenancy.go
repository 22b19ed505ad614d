// Package tenancy provisions tenants into regional databases (as a schema or a database of
// their own) and manages their lifecycle: suspend, activate, delete.
package tenancy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/registry"
)

// Tenant statuses.
const (
	StatusProvisioning = "provisioning"
	StatusActive       = "active"
	StatusSuspended    = "suspended"
	StatusDeleted      = "deleted"
)

// Deployment types.
const (
	DeploySchema   = "schema"
	DeployDatabase = "database"
)

// ErrWrongStatus is returned when a lifecycle step does not apply to the tenant's status.
var ErrWrongStatus = errors.New("not allowed in the tenant's current status")

var realmRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,99}$`)

// ValidRealm reports whether realm is a Keycloak realm name neoauthz accepts.
func ValidRealm(realm string) bool { return realmRe.MatchString(realm) }

// Tenant is a row of admin.tenants.
type Tenant struct {
	ID                string         `json:"id"`
	OrganizationID    *string        `json:"organization_id,omitempty"`
	Slug              string         `json:"slug"`
	Name              string         `json:"name"`
	Status            string         `json:"status"`
	Deployment        string         `json:"deployment_type"`
	Region            string         `json:"region"`
	ConnectionID      *string        `json:"database_connection_id,omitempty"`
	DatabaseName      *string        `json:"database_name,omitempty"`
	SchemaName        string         `json:"schema_name"`
	Realm             string         `json:"external_auth_realm"`
	Settings          map[string]any `json:"settings"`
	ProvisioningError *string        `json:"provisioning_error,omitempty"`
	CreatedAt         time.Time      `json:"created_at"`
	UpdatedAt         time.Time      `json:"updated_at"`
	DeletedAt         *time.Time     `json:"deleted_at,omitempty"`
}

// Service provisions and manages tenants.
type Service struct {
	Admin    *pgxpool.Pool
	Registry *registry.Store
	Fleet    *fleet.Runner
}

// CreateRequest asks for a new tenant.
type CreateRequest struct {
	Slug           string `json:"slug"`
	Name           string `json:"name"`
	Region         string `json:"region"`
	Deployment     string `json:"deployment_type"`
	Realm          string `json:"external_auth_realm"`
	OrganizationID string `json:"organization_id,omitempty"`
}

// Validate checks the request's fields, naming the first one refused.
func (r *CreateRequest) Validate() error {
	if r.Deployment == "" {
		r.Deployment = DeploySchema
	}
	if r.Name == "" {
		r.Name = r.Slug
	}
	switch {
	case !registry.ValidSlug(r.Slug):
		return &registry.ValidationError{Field: "slug", Message: "use lowercase letters, digits and inner dashes (at most 63), e.g. acme-corp"}
	case !registry.ValidSlug(r.Region):
		return &registry.ValidationError{Field: "region", Message: "not a valid region code"}
	case r.Deployment != DeploySchema && r.Deployment != DeployDatabase:
		return &registry.ValidationError{Field: "deployment_type", Message: "must be schema or database"}
	case !ValidRealm(r.Realm):
		return &registry.ValidationError{Field: "external_auth_realm", Message: "use lowercase letters, digits, _ and - (at most 100); no dots, quotes or slashes"}
	case len(r.Name) > 200:
		return &registry.ValidationError{Field: "name", Message: "at most 200 characters"}
	}
	return nil
}

// SchemaName is the schema a tenant's data lives in: t_<slug> with dashes as underscores.
func SchemaName(slug string) string {
	s := "t_" + strings.ReplaceAll(slug, "-", "_")
	return s[:min(len(s), 63)]
}

// DatabaseName is the database of a database-per-tenant deployment.
func DatabaseName(slug string) string {
	s := "tenant_" + strings.ReplaceAll(slug, "-", "_")
	return s[:min(len(s), 63)]
}

const columns = `id::text, organization_id::text, slug, name, status, deployment_type, region_code,
	database_connection_id::text, database_name, schema_name, external_auth_realm, settings,
	provisioning_error, created_at, updated_at, deleted_at`

func scan(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.OrganizationID, &t.Slug, &t.Name, &t.Status, &t.Deployment, &t.Region,
		&t.ConnectionID, &t.DatabaseName, &t.SchemaName, &t.Realm, &t.Settings, &t.ProvisioningError,
		&t.CreatedAt, &t.UpdatedAt, &t.DeletedAt)
	return t, err
}

// Create provisions a tenant: it picks the region's healthy primary database with the fewest
// tenants, creates the schema (or database), migrates it (which seeds the default catalog and
// roles) and marks the tenant active. Any failure leaves the tenant `provisioning` with the
// error recorded; calling Create again with the same request finishes it.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Tenant, error) {
	if err := req.Validate(); err != nil {
		return Tenant{}, err
	}
	t, err := s.Get(ctx, req.Slug)
	switch {
	case err == nil && t.Status != StatusProvisioning:
		return Tenant{}, fmt.Errorf("tenant %q: %w", req.Slug, registry.ErrConflict)
	case err == nil && (t.Realm != req.Realm || t.Deployment != req.Deployment || t.Region != req.Region):
		return Tenant{}, fmt.Errorf("tenant %q is being provisioned with other settings (realm %s, %s in %s): %w",
			req.Slug, t.Realm, t.Deployment, t.Region, registry.ErrConflict)
	case err == nil:
		// Resume an unfinished provisioning where it stopped.
	case errors.Is(err, registry.ErrNotFound):
		if t, err = s.insert(ctx, req); err != nil {
			return Tenant{}, err
		}
	default:
		return Tenant{}, err
	}
	if err := s.provision(ctx, t); err != nil {
		msg := err.Error()
		_, _ = s.Admin.Exec(context.WithoutCancel(ctx), `UPDATE admin.tenants SET provisioning_error = $2, updated_at = now() WHERE id = $1`, t.ID, msg)
		return Tenant{}, fmt.Errorf("provision tenant %q (it stays provisioning; rerun to finish): %w", req.Slug, err)
	}
	return s.Get(ctx, t.ID)
}

func (s *Service) insert(ctx context.Context, req CreateRequest) (Tenant, error) {
	var region bool
	if err := s.Admin.QueryRow(ctx, `SELECT is_active FROM admin.regions WHERE code = $1`, req.Region).Scan(&region); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return Tenant{}, &registry.ValidationError{Field: "region", Message: fmt.Sprintf("region %q does not exist", req.Region)}
		}
		return Tenant{}, err
	}
	if !region {
		return Tenant{}, &registry.ValidationError{Field: "region", Message: fmt.Sprintf("region %q is not active", req.Region)}
	}
	conn, err := s.Registry.PickPrimary(ctx, req.Region)
	if err != nil {
		return Tenant{}, err
	}
	var dbName *string
	if req.Deployment == DeployDatabase {
		n := DatabaseName(req.Slug)
		dbName = &n
	}
	var org *string
	if req.OrganizationID != "" {
		org = &req.OrganizationID
	}
	t, err := scan(s.Admin.QueryRow(ctx, `INSERT INTO admin.tenants
		(organization_id, slug, name, status, deployment_type, region_code, database_connection_id, database_name, schema_name, external_auth_realm)
		VALUES ($1, $2, $3, 'provisioning', $4, $5, $6, $7, $8, $9) RETURNING `+columns,
		org, req.Slug, req.Name, req.Deployment, req.Region, conn.ID, dbName, SchemaName(req.Slug), req.Realm))
	return t, mapErr(err, req)
}

func mapErr(err error, req CreateRequest) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch {
		case strings.Contains(pgErr.ConstraintName, "realm"):
			return fmt.Errorf("realm %q is already used by another tenant: %w", req.Realm, registry.ErrConflict)
		case strings.Contains(pgErr.ConstraintName, "placement"):
			return fmt.Errorf("schema %q is already taken on that database: %w", SchemaName(req.Slug), registry.ErrConflict)
		default:
			return fmt.Errorf("tenant %q: %w", req.Slug, registry.ErrConflict)
		}
	}
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return &registry.ValidationError{Field: "organization_id", Message: "organization does not exist"}
	}
	return err
}

func (s *Service) provision(ctx context.Context, t Tenant) error {
	if t.ConnectionID == nil {
		return errors.New("tenant has no database connection")
	}
	c, err := s.Registry.GetConnection(ctx, *t.ConnectionID)
	if err != nil {
		return err
	}
	if t.DatabaseName != nil {
		if err := s.createDatabase(ctx, c, *t.DatabaseName); err != nil {
			return err
		}
	}
	target, err := fleet.TenantTarget(s.Registry, c, t.ID, t.Slug, t.SchemaName, t.DatabaseName)
	if err != nil {
		return err
	}
	if err := s.Fleet.ApplyTarget(ctx, target); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, target.ConnString)
	if err != nil {
		return fmt.Errorf("connect to the tenant's database: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE `+pgx.Identifier{t.SchemaName, "authz_state"}.Sanitize()+` SET tenant_id = $1`, t.ID); err != nil {
		return err
	}
	_, err = s.Admin.Exec(ctx, `UPDATE admin.tenants SET status = 'active', provisioning_error = NULL, updated_at = now()
		WHERE id = $1 AND status = 'provisioning'`, t.ID)
	return err
}

func (s *Service) createDatabase(ctx context.Context, c registry.Connection, name string) error {
	dsn, err := s.Registry.ConnString(c, "")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to database server %s: %w", c.Name, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: an earlier attempt got this far
		return nil
	}
	return err
}

// Get returns a tenant by id or slug.
func (s *Service) Get(ctx context.Context, idOrSlug string) (Tenant, error) {
	t, err := scan(s.Admin.QueryRow(ctx, `SELECT `+columns+` FROM admin.tenants WHERE slug = $1 OR id::text = $1`, idOrSlug))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %q: %w", idOrSlug, registry.ErrNotFound)
	}
	return t, err
}

// Filter narrows List; zero fields match everything; deleted tenants are listed only when
// asked for by status.
type Filter struct {
	Status   string
	Region   string
	Page     int
	PageSize int
}

// List returns a page of tenants by slug and the total count.
func (s *Service) List(ctx context.Context, f Filter) ([]Tenant, int, error) {
	if f.Page < 1 {
		f.Page = 1
	}
	if f.PageSize < 1 || f.PageSize > 100 {
		f.PageSize = 100
	}
	rows, err := s.Admin.Query(ctx, `SELECT `+columns+`, count(*) OVER () FROM admin.tenants
		WHERE ($1 = '' AND status <> 'deleted' OR status = $1) AND ($2 = '' OR region_code = $2)
		ORDER BY slug LIMIT $3 OFFSET $4`, f.Status, f.Region, f.PageSize, (f.Page-1)*f.PageSize)
	if err != nil {
		return nil, 0, err
	}
	total := 0
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) {
		var t Tenant
		err := row.Scan(&t.ID, &t.OrganizationID, &t.Slug, &t.Name, &t.Status, &t.Deployment, &t.Region,
			&t.ConnectionID, &t.DatabaseName, &t.SchemaName, &t.Realm, &t.Settings, &t.ProvisioningError,
			&t.CreatedAt, &t.UpdatedAt, &t.DeletedAt, &total)
		return t, err
	})
	return list, total, err
}

// Suspend stops a tenant's users from authenticating and being authorized.
func (s *Service) Suspend(ctx context.Context, idOrSlug string) (Tenant, error) {
	return s.transition(ctx, idOrSlug, StatusActive, StatusSuspended)
}

// Activate lifts a suspension.
func (s *Service) Activate(ctx context.Context, idOrSlug string) (Tenant, error) {
	return s.transition(ctx, idOrSlug, StatusSuspended, StatusActive)
}

func (s *Service) transition(ctx context.Context, idOrSlug, from, to string) (Tenant, error) {
	t, err := scan(s.Admin.QueryRow(ctx, `UPDATE admin.tenants SET status = $3, updated_at = now()
		WHERE (slug = $1 OR id::text = $1) AND status IN ($2, $3) RETURNING `+columns, idOrSlug, from, to))
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := s.Get(ctx, idOrSlug)
		if gerr != nil {
			return Tenant{}, gerr
		}
		return Tenant{}, fmt.Errorf("tenant %q is %s, only a %s tenant can become %s: %w", cur.Slug, cur.Status, from, to, ErrWrongStatus)
	}
	return t, err
}

// Delete marks a tenant deleted (its users stop authenticating; its data stays). With purge
// its schema or database is dropped and its row removed.
func (s *Service) Delete(ctx context.Context, idOrSlug string, purge bool) (Tenant, error) {
	t, err := s.Get(ctx, idOrSlug)
	if err != nil {
		return Tenant{}, err
	}
	if t.Status != StatusDeleted {
		t, err = scan(s.Admin.QueryRow(ctx, `UPDATE admin.tenants SET status = 'deleted', deleted_at = now(), updated_at = now()
			WHERE id = $1 RETURNING `+columns, t.ID))
		if err != nil {
			return Tenant{}, err
		}
	}
	if !purge {
		return t, nil
	}
	if t.ConnectionID != nil {
		c, err := s.Registry.GetConnection(ctx, *t.ConnectionID)
		if err != nil {
			return t, err
		}
		if err := s.dropData(ctx, c, t); err != nil {
			return t, fmt.Errorf("purge tenant %q: %w", t.Slug, err)
		}
	}
	_, err = s.Admin.Exec(ctx, `DELETE FROM admin.tenants WHERE id = $1`, t.ID)
	return t, err
}

func (s *Service) dropData(ctx context.Context, c registry.Connection, t Tenant) error {
	dsn, err := s.Registry.ConnString(c, "")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if t.DatabaseName != nil {
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{*t.DatabaseName}.Sanitize()+" WITH (FORCE)")
		return err
	}
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{t.SchemaName}.Sanitize()+" CASCADE")
	return err
}
