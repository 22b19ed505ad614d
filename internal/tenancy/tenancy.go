// Package tenancy provisions tenants into regional databases (as a schema or a database of
// their own) and manages their lifecycle: suspend, activate, delete.
package tenancy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/keycloak"
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

var uuidShaped = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

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
	// RealmManaged is set when neoauthz created the tenant's realm (create_keycloak_realm).
	RealmManaged bool       `json:"keycloak_realm_managed"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
}

// Service provisions and manages tenants.
type Service struct {
	Admin    *pgxpool.Pool
	Registry *registry.Store
	Fleet    *fleet.Runner
	// PlatformRealm is the Keycloak realm of platform users; no tenant may use it (compared
	// case-insensitively). Empty when unknown.
	PlatformRealm string
	// Realms creates, disables and deletes tenants' Keycloak realms; nil when Keycloak is not
	// configured (creating a tenant with a realm is then refused).
	Realms *keycloak.Provisioner
}

// CreateRequest asks for a new tenant.
type CreateRequest struct {
	Slug           string `json:"slug"`
	Name           string `json:"name"`
	Region         string `json:"region"`
	Deployment     string `json:"deployment_type"`
	Realm          string `json:"external_auth_realm"`
	OrganizationID string `json:"organization_id,omitempty"`
	// CreateRealm creates the tenant's Keycloak realm (named external_auth_realm, or by the
	// configured pattern when that is empty) with an application client whose tokens the
	// tenant accepts.
	CreateRealm bool `json:"create_keycloak_realm,omitempty"`
	// Owner, with CreateRealm, is created in the realm and made the tenant's owner.
	Owner *keycloak.Owner `json:"keycloak_owner,omitempty"`
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
	case uuidShaped.MatchString(r.Slug):
		// Lookups take an id or a slug: a slug that reads as an id would be ambiguous.
		return &registry.ValidationError{Field: "slug", Message: "must not be shaped like a uuid"}
	case !registry.ValidSlug(r.Region):
		return &registry.ValidationError{Field: "region", Message: "not a valid region code"}
	case r.Deployment != DeploySchema && r.Deployment != DeployDatabase:
		return &registry.ValidationError{Field: "deployment_type", Message: "must be schema or database"}
	case r.Owner != nil && !r.CreateRealm:
		return &registry.ValidationError{Field: "keycloak_owner", Message: "only with create_keycloak_realm"}
	case r.Owner != nil && r.Owner.Validate() != nil:
		return &registry.ValidationError{Field: "keycloak_owner", Message: r.Owner.Validate().Error()}
	case r.Realm == "" && r.CreateRealm:
		// Named by the configured pattern when the service provisions it.
	case !ValidRealm(r.Realm):
		return &registry.ValidationError{Field: "external_auth_realm", Message: "use lowercase letters, digits, _ and - (at most 100); no dots, quotes or slashes"}
	case len(r.Name) > 200:
		return &registry.ValidationError{Field: "name", Message: "at most 200 characters"}
	}
	return nil
}

// SchemaName is the schema a tenant's data lives in: t_<slug> with dashes as underscores when
// that fits in an identifier, else th_<start of the slug>_<hash of the slug>. Slugs hold no
// underscores, so the kept form is one-to-one; the two forms differ at their second character,
// and hashed names differ by 64 bits of SHA-256: two slugs never get one name.
func SchemaName(slug string) string { return storageName("t", slug) }

// DatabaseName is the database of a database-per-tenant deployment, derived like SchemaName
// with the prefix tenant.
func DatabaseName(slug string) string { return storageName("tenant", slug) }

const maxIdentifier = 63

func storageName(prefix, slug string) string {
	body := strings.ReplaceAll(slug, "-", "_")
	if s := prefix + "_" + body; len(s) <= maxIdentifier {
		return s
	}
	sum := sha256.Sum256([]byte(slug))
	hash := hex.EncodeToString(sum[:8])
	keep := maxIdentifier - len(prefix) - len("h_") - len("_") - len(hash)
	return prefix + "h_" + strings.TrimRight(body[:keep], "_") + "_" + hash
}

// Columns are the columns of admin.tenants Scan reads, in its order.
const Columns = `id::text, organization_id::text, slug, name, status, deployment_type, region_code,
	database_connection_id::text, database_name, schema_name, external_auth_realm, settings,
	provisioning_error, keycloak_realm_managed, created_at, updated_at, deleted_at`

// Scan reads a tenant selected with Columns, then any columns after them into extra.
func Scan(row pgx.Row, extra ...any) (Tenant, error) {
	var t Tenant
	err := row.Scan(append([]any{&t.ID, &t.OrganizationID, &t.Slug, &t.Name, &t.Status, &t.Deployment, &t.Region,
		&t.ConnectionID, &t.DatabaseName, &t.SchemaName, &t.Realm, &t.Settings, &t.ProvisioningError,
		&t.RealmManaged, &t.CreatedAt, &t.UpdatedAt, &t.DeletedAt}, extra...)...)
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
	if req.CreateRealm {
		if s.Realms == nil {
			return Tenant{}, &registry.ValidationError{Field: "create_keycloak_realm",
				Message: ErrRealmNotConfigured.Error()}
		}
		if req.Realm == "" {
			req.Realm = s.Realms.Settings.RealmName(req.Slug)
			if err := req.Validate(); err != nil {
				return Tenant{}, err
			}
		}
	}
	if s.PlatformRealm != "" && strings.EqualFold(req.Realm, s.PlatformRealm) {
		return Tenant{}, &registry.ValidationError{Field: "external_auth_realm", Message: "is the platform realm"}
	}
	t, err := s.Get(ctx, req.Slug)
	switch {
	case err == nil && t.Status != StatusProvisioning:
		return Tenant{}, fmt.Errorf("tenant %q: %w", req.Slug, registry.ErrConflict)
	case err == nil && (t.Realm != req.Realm || t.Deployment != req.Deployment || t.Region != req.Region || t.RealmManaged != req.CreateRealm):
		return Tenant{}, fmt.Errorf("tenant %q is being provisioned with other settings (realm %s, %s in %s, create_keycloak_realm %t): %w",
			req.Slug, t.Realm, t.Deployment, t.Region, t.RealmManaged, registry.ErrConflict)
	case err == nil:
		// Resume an unfinished provisioning where it stopped.
	case errors.Is(err, registry.ErrNotFound):
		if t, err = s.insert(ctx, req); err != nil {
			return Tenant{}, err
		}
	default:
		return Tenant{}, err
	}
	if err := s.provision(ctx, t, req.Owner); err != nil {
		msg := err.Error()
		wctx := context.WithoutCancel(ctx)
		_ = pgx.BeginFunc(wctx, s.Admin, func(tx pgx.Tx) error {
			if _, err := tx.Exec(wctx, `UPDATE admin.tenants SET provisioning_error = $2, updated_at = now() WHERE id = $1`, t.ID, msg); err != nil {
				return err
			}
			return appendAudit(wctx, tx, "tenant.provision_failed", t, nil, map[string]any{"status": StatusProvisioning, "error": msg})
		})
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
	// A realm neoauthz creates issues tokens to its application client with its audience:
	// the tenant accepts exactly those.
	settings := map[string]any{}
	if req.CreateRealm {
		settings = map[string]any{"audiences": []string{s.Realms.Settings.Audience}, "clients": []string{s.Realms.Settings.AppClientID}}
	}
	var t Tenant
	err = pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
		var err error
		t, err = Scan(tx.QueryRow(ctx, `INSERT INTO admin.tenants
			(organization_id, slug, name, status, deployment_type, region_code, database_connection_id, database_name, schema_name,
			 external_auth_realm, settings, keycloak_realm_managed)
			VALUES ($1, $2, $3, 'provisioning', $4, $5, $6, $7, $8, $9, $10, $11) RETURNING `+Columns,
			org, req.Slug, req.Name, req.Deployment, req.Region, conn.ID, dbName, SchemaName(req.Slug), req.Realm, settings, req.CreateRealm))
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, "tenant.create", t, nil, map[string]any{"outcome": "provisioning", "tenant": t})
	})
	return t, mapErr(err, req)
}

// appendAudit records a change to tenant t inside tx, the transaction that makes it, by the
// actor ctx carries.
func appendAudit(ctx context.Context, tx pgx.Tx, action string, t Tenant, before, after any) error {
	_, err := audit.Append(ctx, tx, audit.Attributed(ctx, audit.Record{Action: action, TargetType: "tenant",
		TargetID: t.ID, TenantID: t.ID, Before: before, After: after}))
	return err
}

func mapErr(err error, req CreateRequest) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		switch {
		case strings.Contains(pgErr.ConstraintName, "realm"):
			return fmt.Errorf("realm %q is already used by another tenant: %w", req.Realm, registry.ErrConflict)
		case strings.Contains(pgErr.ConstraintName, "schema_name"), strings.Contains(pgErr.ConstraintName, "database_name"):
			return fmt.Errorf("the storage name of tenant %q is recorded on another tenant: %w", req.Slug, registry.ErrConflict)
		default:
			return fmt.Errorf("tenant %q: %w", req.Slug, registry.ErrConflict)
		}
	}
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return &registry.ValidationError{Field: "organization_id", Message: "organization does not exist"}
	}
	return err
}

func (s *Service) provision(ctx context.Context, t Tenant, owner *keycloak.Owner) error {
	if t.ConnectionID == nil {
		return errors.New("tenant has no database connection")
	}
	c, err := s.Registry.GetConnection(ctx, *t.ConnectionID)
	if err != nil {
		return err
	}
	if t.DatabaseName != nil {
		if err := s.createDatabase(ctx, c, t); err != nil {
			return err
		}
	}
	target, err := fleet.TenantTarget(s.Registry, c, t.ID, t.Slug, t.SchemaName, t.DatabaseName)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, target.ConnString)
	if err != nil {
		return fmt.Errorf("connect to the tenant's database: %w", err)
	}
	defer conn.Close(context.Background())
	if err := createSchema(ctx, conn, t); err != nil {
		return err
	}
	if err := s.Fleet.ApplyTarget(ctx, target); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `UPDATE `+pgx.Identifier{t.SchemaName, "authz_state"}.Sanitize()+` SET tenant_id = $1`, t.ID); err != nil {
		return err
	}
	if t.RealmManaged {
		if err := s.provisionRealm(ctx, conn, t, owner); err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE admin.tenants SET status = 'active', provisioning_error = NULL, updated_at = now()
			WHERE id = $1 AND status = 'provisioning'`, t.ID)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return appendAudit(ctx, tx, "tenant.provisioned", t, map[string]any{"status": StatusProvisioning},
			map[string]any{"status": StatusActive, "schema_name": t.SchemaName, "database_name": t.DatabaseName, "database_connection_id": t.ConnectionID})
	})
}

// Ownership. Provisioning creates a tenant's schema (and database) itself, marked with a
// comment naming the tenant, and never moves into one that exists unmarked: a name already
// taken by anything else is refused, never shared. Purge drops only what carries the mark (or,
// for tenants provisioned before marks, whose authz_state names the tenant).

// ErrNotOwned is returned when a schema or database a tenant's row names exists but is not
// that tenant's: provisioning will not move into it, purge will not drop it.
var ErrNotOwned = errors.New("exists and is not this tenant's")

func ownerMark(tenantID string) string { return "neoauthz tenant " + tenantID }

// createSchema creates t's schema with its mark, or accepts the one t created earlier.
func createSchema(ctx context.Context, conn *pgx.Conn, t Tenant) error {
	exists, owned, err := schemaOwned(ctx, conn, t)
	switch {
	case err != nil:
		return err
	case exists && !owned:
		return fmt.Errorf("schema %s %w: %w", t.SchemaName, ErrNotOwned, registry.ErrConflict)
	case exists:
		return nil
	}
	// Two transactions racing here: the loser's CREATE SCHEMA fails, nothing is shared.
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		id := pgx.Identifier{t.SchemaName}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "COMMENT ON SCHEMA "+id+" IS "+quoteLiteral(ownerMark(t.ID)))
		return err
	})
}

// schemaOwned reports whether t's schema exists on conn's database and whether it is t's.
func schemaOwned(ctx context.Context, conn *pgx.Conn, t Tenant) (exists, owned bool, err error) {
	var mark *string
	var hasState bool
	err = conn.QueryRow(ctx, `SELECT n.oid IS NOT NULL, obj_description(n.oid, 'pg_namespace'),
			to_regclass(quote_ident($1) || '.authz_state') IS NOT NULL
		FROM (SELECT to_regnamespace(quote_ident($1))::oid AS oid) n`, t.SchemaName).Scan(&exists, &mark, &hasState)
	if err != nil || !exists {
		return exists, false, err
	}
	if mark != nil {
		return true, *mark == ownerMark(t.ID), nil
	}
	if !hasState {
		return true, false, nil
	}
	var stateTenant *string
	err = conn.QueryRow(ctx, `SELECT tenant_id::text FROM `+pgx.Identifier{t.SchemaName, "authz_state"}.Sanitize()).Scan(&stateTenant)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, false, nil
	}
	return true, stateTenant != nil && *stateTenant == t.ID, err
}

// databaseOwned reports whether t's database exists on conn's server and whether it is t's.
func databaseOwned(ctx context.Context, conn *pgx.Conn, t Tenant) (exists, owned bool, err error) {
	var mark *string
	err = conn.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`,
		*t.DatabaseName).Scan(&mark)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	return true, err == nil && mark != nil && *mark == ownerMark(t.ID), err
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (s *Service) serverConn(ctx context.Context, c registry.Connection) (*pgx.Conn, error) {
	dsn, err := s.Registry.ConnString(c, "")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to database server %s: %w", c.Name, err)
	}
	return conn, nil
}

// createDatabase creates t's database with its mark, or accepts the one t created earlier. A
// failure between CREATE DATABASE and its mark leaves an unmarked database, which a rerun
// refuses: an operator drops it (nothing of the tenant's is in it yet) and reruns.
func (s *Service) createDatabase(ctx context.Context, c registry.Connection, t Tenant) error {
	conn, err := s.serverConn(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	exists, owned, err := databaseOwned(ctx, conn, t)
	switch {
	case err != nil:
		return err
	case exists && !owned:
		return fmt.Errorf("database %s %w: %w", *t.DatabaseName, ErrNotOwned, registry.ErrConflict)
	case exists:
		return nil
	}
	id := pgx.Identifier{*t.DatabaseName}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+id); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "COMMENT ON DATABASE "+id+" IS "+quoteLiteral(ownerMark(t.ID)))
	return err
}

// Get returns a tenant by id or slug.
func (s *Service) Get(ctx context.Context, idOrSlug string) (Tenant, error) {
	t, err := Scan(s.Admin.QueryRow(ctx, `SELECT `+Columns+` FROM admin.tenants WHERE slug = $1 OR id::text = $1`, idOrSlug))
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
	rows, err := s.Admin.Query(ctx, `SELECT `+Columns+`, count(*) OVER () FROM admin.tenants
		WHERE ($1 = '' AND status <> 'deleted' OR status = $1) AND ($2 = '' OR region_code = $2)
		ORDER BY slug LIMIT $3 OFFSET $4`, f.Status, f.Region, f.PageSize, (f.Page-1)*f.PageSize)
	if err != nil {
		return nil, 0, err
	}
	total := 0
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) { return Scan(row, &total) })
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
	var t Tenant
	err := pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
		var before string
		err := tx.QueryRow(ctx, `SELECT status FROM admin.tenants WHERE (slug = $1 OR id::text = $1) AND status IN ($2, $3) FOR UPDATE`,
			idOrSlug, from, to).Scan(&before)
		if err != nil {
			return err
		}
		if t, err = Scan(tx.QueryRow(ctx, `UPDATE admin.tenants SET status = $2, updated_at = now()
			WHERE (slug = $1 OR id::text = $1) RETURNING `+Columns, idOrSlug, to)); err != nil {
			return err
		}
		action := map[string]string{StatusSuspended: "tenant.suspend", StatusActive: "tenant.activate"}[to]
		return appendAudit(ctx, tx, action, t, map[string]any{"status": before}, map[string]any{"status": t.Status})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := s.Get(ctx, idOrSlug)
		if gerr != nil {
			return Tenant{}, gerr
		}
		return Tenant{}, fmt.Errorf("tenant %q is %s, only a %s tenant can become %s: %w", cur.Slug, cur.Status, from, to, ErrWrongStatus)
	}
	if err != nil {
		return Tenant{}, err
	}
	return t, s.SyncRealmStatus(ctx, t)
}

// DeleteOptions say how much of a tenant Delete removes.
type DeleteOptions struct {
	// Purge drops the tenant's schema or database and removes its row.
	Purge bool
	// DeleteRealm, with Purge, also deletes the tenant's Keycloak realm (only one neoauthz
	// created for it).
	DeleteRealm bool
}

// Delete marks a tenant deleted (its users stop authenticating; its data stays). With
// opts.Purge its schema or database is dropped and its row removed; with opts.DeleteRealm
// its realm too.
func (s *Service) Delete(ctx context.Context, idOrSlug string, opts DeleteOptions) (Tenant, error) {
	t, err := s.Get(ctx, idOrSlug)
	if err != nil {
		return Tenant{}, err
	}
	if err := s.CheckDelete(t, opts); err != nil {
		return Tenant{}, err
	}
	purge := opts.Purge
	if t.Status != StatusDeleted {
		before := t.Status
		err = pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
			var err error
			t, err = Scan(tx.QueryRow(ctx, `UPDATE admin.tenants SET status = 'deleted', deleted_at = now(), updated_at = now()
				WHERE id = $1 RETURNING `+Columns, t.ID))
			if err != nil {
				return err
			}
			return appendAudit(ctx, tx, "tenant.delete", t, map[string]any{"status": before}, map[string]any{"status": t.Status})
		})
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
	if opts.DeleteRealm {
		if err := s.deleteRealm(ctx, t); err != nil {
			return t, fmt.Errorf("purge tenant %q (its data is dropped; rerun to finish): %w", t.Slug, err)
		}
	}
	// The data is gone (a database cannot share a transaction with the admin database); the
	// row and the audit row saying so go together.
	err = pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM admin.tenants WHERE id = $1`, t.ID); err != nil {
			return err
		}
		return appendAudit(ctx, tx, "tenant.purge", t, map[string]any{"slug": t.Slug, "schema_name": t.SchemaName, "database_name": t.DatabaseName},
			map[string]any{"outcome": "purged"})
	})
	return t, err
}

// dropData drops t's database or schema when it carries t's mark; one that is absent is
// already gone, one that is someone else's is refused.
func (s *Service) dropData(ctx context.Context, c registry.Connection, t Tenant) error {
	conn, err := s.serverConn(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	what, owns, drop := "schema "+t.SchemaName, schemaOwned, "DROP SCHEMA "+pgx.Identifier{t.SchemaName}.Sanitize()+" CASCADE"
	if t.DatabaseName != nil {
		what, owns, drop = "database "+*t.DatabaseName, databaseOwned, "DROP DATABASE "+pgx.Identifier{*t.DatabaseName}.Sanitize()+" WITH (FORCE)"
	}
	exists, owned, err := owns(ctx, conn, t)
	switch {
	case err != nil:
		return err
	case !exists:
		return nil
	case !owned:
		return fmt.Errorf("%s %w", what, ErrNotOwned)
	}
	_, err = conn.Exec(ctx, drop)
	return err
}
