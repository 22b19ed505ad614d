package pgstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/migrate"
	"github.com/neofast/neoauthz/internal/registry"
)

// Tenant is what the pdp needs of an admin.tenants row.
type Tenant struct {
	ID, Slug, Status, Realm, SchemaName string
	// ConnectionID is the registry connection the tenant is placed on ("" while unplaced).
	ConnectionID string
	// Database is "" for a schema deployment (the connection's own database) and the
	// tenant's own database otherwise.
	Database string
	// Region is the tenant's region; DatabaseRegion is the region of the database it is
	// placed on ("" while unplaced). Provisioning keeps them equal; both are compared with
	// the regions a pdp serves (ServedBy).
	Region, DatabaseRegion string
	// AdminVersion is admin.authz_state.version, read in the same statement as the row, so a
	// cached Tenant can be compared with the admin database's notifications.
	AdminVersion uint64
	// UserSync is settings.user_sync.enabled: the pdp creates the user of a first token
	// (SyncTenantUser).
	UserSync bool
}

var _ authn.RealmResolver = (*Store)(nil)

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Tenant returns the tenant with id or slug idOrSlug, or ErrNotFound. When the text is both a
// tenant's id and another's slug, the id wins. Deleted tenants are returned with their status
// "deleted"; the caller denies.
func (s *Store) Tenant(ctx context.Context, idOrSlug string) (Tenant, error) {
	// Comparing uuid with uuid (not id::text with text) lets the primary key index answer.
	var id *string
	if uuidRe.MatchString(idOrSlug) {
		id = &idOrSlug
	}
	ctx, cancel := s.timeout(ctx, "tenant")
	defer cancel()
	var t Tenant
	var version int64
	err := s.admin.QueryRow(ctx, `SELECT t.id::text, t.slug, t.status, t.external_auth_realm, t.schema_name,
			coalesce(t.database_connection_id::text, ''), coalesce(t.database_name, ''), t.region_code,
			coalesce(c.region_code, ''), s.version,
			coalesce(t.settings->'user_sync'->'enabled' = 'true'::jsonb, false)
		  FROM admin.tenants t CROSS JOIN admin.authz_state s
		  LEFT JOIN admin.database_connections c ON c.id = t.database_connection_id
		 WHERE t.slug = $1 OR t.id = $2::uuid
		 ORDER BY t.id IS NOT DISTINCT FROM $2::uuid DESC
		 LIMIT 1`, idOrSlug, id).
		Scan(&t.ID, &t.Slug, &t.Status, &t.Realm, &t.SchemaName, &t.ConnectionID, &t.Database, &t.Region,
			&t.DatabaseRegion, &version, &t.UserSync)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %q: %w", idOrSlug, ErrNotFound)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("pgstore: tenant %q: %w", idOrSlug, err)
	}
	t.AdminVersion = uint64(version)
	return t, nil
}

// ServedBy reports whether a pdp limited to regions may read t's data: its region and the
// region of its database (when placed) are both served.
func (t Tenant) ServedBy(regions registry.Regions) bool {
	return regions.Serves(t.Region) && (t.DatabaseRegion == "" || regions.Serves(t.DatabaseRegion))
}

// realmColumns are what identity needs of a tenant: id, slug, status and the string entries of
// settings.audiences and settings.clients.
var realmColumns = `id::text, slug, status, ` + settingsList("audiences") + `, ` + settingsList("clients")

// settingsList reads settings-><name> as a text array: its string elements when it is a JSON
// array, else empty. Elements that are not strings are ignored, which can only narrow what is
// accepted.
func settingsList(name string) string {
	return `ARRAY(SELECT a #>> '{}' FROM jsonb_array_elements(
	          CASE jsonb_typeof(settings->'` + name + `') WHEN 'array' THEN settings->'` + name + `' ELSE '[]' END) a
	       WHERE jsonb_typeof(a) = 'string')`
}

// scanRealm reads realmColumns (after any columns scanned before them, given in dest).
func scanRealm(row pgx.Row, tr *authn.TenantRealm, dest ...any) error {
	if err := row.Scan(append(dest, &tr.TenantID, &tr.Slug, &tr.Status, &tr.Audiences, &tr.Clients)...); err != nil {
		return err
	}
	if len(tr.Audiences) == 0 {
		tr.Audiences = nil
	}
	if len(tr.Clients) == 0 {
		tr.Clients = nil
	}
	return nil
}

// ResolveRealm implements authn.RealmResolver: the tenant whose external_auth_realm is realm,
// deleted tenants excluded (authn.ErrRealmNotFound). Any status other than deleted is passed
// through for authn to refuse. Audiences and clients come from settings (settingsList).
func (s *Store) ResolveRealm(ctx context.Context, realm string) (authn.TenantRealm, error) {
	ctx, cancel := s.timeout(ctx, "resolve_realm")
	defer cancel()
	var tr authn.TenantRealm
	err := scanRealm(s.admin.QueryRow(ctx, `SELECT `+realmColumns+`
		  FROM admin.tenants WHERE external_auth_realm = $1 AND status <> 'deleted'`, realm), &tr)
	if errors.Is(err, pgx.ErrNoRows) {
		return authn.TenantRealm{}, authn.ErrRealmNotFound
	}
	if err != nil {
		return authn.TenantRealm{}, fmt.Errorf("pgstore: resolve realm %q: %w", realm, err)
	}
	return tr, nil
}

// databaseVersionsSQL reads every listed schema's authz_state.version in one statement on the
// tenant database. The schema list is a parameter, so the text is constant (prepared once per
// connection) however many tenants come and go; query_to_xml runs each schema's SELECT without
// plpgsql, and to_regclass skips a schema that does not exist (yet, or any more) instead of
// failing the whole poll. Names are validated in Go and quoted again by format('%I').
const databaseVersionsSQL = `SELECT l.tenant_id,
       substring(query_to_xml(format('SELECT version FROM %I.authz_state', l.schema_name), false, true, '')::text
                 FROM '<version>([0-9]+)</version>')::bigint
  FROM unnest($1::text[], $2::text[]) AS l (tenant_id, schema_name)
 WHERE to_regclass(format('%I.authz_state', l.schema_name)) IS NOT NULL`

// DatabaseVersions returns tenant id → authz_state.version for every tenant that is not
// deleted and is placed on database of connection connectionID ("" or the connection's own
// database name mean the connection's database). A tenant whose schema does not exist yet is
// left out. The sync layer calls it after a listener reconnect and on its periodic poll.
func (s *Store) DatabaseVersions(ctx context.Context, connectionID, database string) (map[string]uint64, error) {
	type placed struct{ id, schema string }
	qctx, cancel := s.timeout(ctx, "database_tenants")
	rows, err := s.admin.Query(qctx, `SELECT t.id::text, t.schema_name
		  FROM admin.tenants t JOIN admin.database_connections c ON c.id = t.database_connection_id
		 WHERE (c.id::text = $1 OR c.name = $1) AND t.status <> 'deleted'
		   AND coalesce(t.database_name, c.database) = coalesce(nullif($2, ''), c.database)`, connectionID, database)
	var list []placed
	if err == nil {
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (placed, error) {
			var p placed
			err := row.Scan(&p.id, &p.schema)
			return p, err
		})
	}
	cancel()
	if err != nil {
		return nil, fmt.Errorf("pgstore: tenants on database connection %s: %w", connectionID, err)
	}
	versions := make(map[string]uint64, len(list))
	if len(list) == 0 {
		return versions, nil
	}
	ids, schemas := make([]string, len(list)), make([]string, len(list))
	for i, p := range list {
		if !migrate.ValidSchemaName(p.schema) {
			return nil, fmt.Errorf("pgstore: schema %q of tenant %s: %w", p.schema, p.id, ErrInvalidSchemaName)
		}
		ids[i], schemas[i] = p.id, p.schema
	}
	pool, err := s.Pool(ctx, connectionID, database)
	if err != nil {
		return nil, err
	}
	qctx, cancel = s.timeout(ctx, "database_versions")
	defer cancel()
	rows, err = pool.Query(qctx, databaseVersionsSQL, ids, schemas)
	if err == nil {
		var id string
		var v *int64
		_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error {
			if v == nil || *v <= 0 {
				return fmt.Errorf("tenant %s: authz_state has no valid row", id)
			}
			versions[id] = uint64(*v)
			return nil
		})
		if err == nil {
			err = rows.Err() // ForEachRow checked it already; explicit for rowserrcheck
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: versions on database connection %s: %w", connectionID, err)
	}
	return versions, nil
}
