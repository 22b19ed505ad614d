package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/migrate"
)

// rbacTables names one level's RBAC tables, already quoted. teams and members are empty at
// platform level, whose groups (tenants) have neither hierarchy nor membership.
type rbacTables struct {
	state, users, userRoles, userPerms, perms, roles, roleInherits, rolePerms string
	teams, members                                                            string
	group                                                                     string // the restriction column
}

func tenantTables(schema string) rbacTables {
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	return rbacTables{
		state: q("authz_state"), users: q("users"), userRoles: q("user_roles"), userPerms: q("user_permissions"),
		perms: q("permissions"), roles: q("roles"), roleInherits: q("role_inherits"), rolePerms: q("role_permissions"),
		teams: q("teams"), members: q("team_members"), group: "team_id",
	}
}

func platformTables() rbacTables {
	q := func(table string) string { return pgx.Identifier{"admin", table}.Sanitize() }
	return rbacTables{
		state: q("authz_state"), users: q("platform_users"), userRoles: q("platform_user_roles"),
		userPerms: q("platform_user_permissions"), perms: q("platform_permissions"), roles: q("platform_roles"),
		roleInherits: q("platform_role_inherits"), rolePerms: q("platform_role_permissions"), group: "tenant_id",
	}
}

// micros renders a nullable timestamptz as unix microseconds (the engine's precision), NULL
// for "never". 'infinity' is "never" too; '-infinity' never passes the expiry filter.
func micros(col string) string {
	return "CASE WHEN " + col + " IS NULL OR NOT isfinite(" + col + ") THEN NULL ELSE floor(extract(epoch FROM " + col + ") * 1000000)::bigint END"
}

// loaderSQL builds the one statement that loads a user: a single statement sees a single
// snapshot, so the authz_state version it returns is exactly the version of the facts.
// $1 is the user's external id. The result is one row (state LEFT JOIN user), with the
// collections aggregated to JSON or arrays.
//
// Expired assignments and direct permissions are filtered with the statement's now(); the
// engine compares expiries again with its own clock. Roles are every role reachable from the
// remaining assignments through role_inherits, inactive ones included (the engine cuts
// those); UNION in the recursive CTEs makes cycles end. Teams are the member teams and the
// restriction teams with all their descendants; the engine closes the parent → children map
// it is given, so the direct edges below those teams are enough.
func loaderSQL(t rbacTables) string {
	var b strings.Builder
	b.WriteString(`WITH RECURSIVE
state AS (SELECT version, tenant_id FROM ` + t.state + `),
usr AS (SELECT id, status FROM ` + t.users + ` WHERE external_id = $1),
asg AS (
    SELECT ur.role_id, ur.` + t.group + ` AS grp, ur.expires_at
      FROM ` + t.userRoles + ` ur JOIN usr ON ur.user_id = usr.id
     WHERE ur.expires_at IS NULL OR ur.expires_at > now()),
dir AS (
    SELECT p.code, up.is_granted, up.` + t.group + ` AS grp, up.expires_at
      FROM ` + t.userPerms + ` up JOIN usr ON up.user_id = usr.id
      JOIN ` + t.perms + ` p ON p.id = up.permission_id
     WHERE up.expires_at IS NULL OR up.expires_at > now()),
reach (id) AS (
    SELECT role_id FROM asg
    UNION
    SELECT ri.inherited_role_id FROM ` + t.roleInherits + ` ri JOIN reach ON ri.role_id = reach.id)`)
	if t.teams != "" {
		b.WriteString(`,
mem AS (SELECT tm.team_id FROM ` + t.members + ` tm JOIN usr ON tm.user_id = usr.id),
sub (id) AS (
    SELECT team_id FROM mem
    UNION SELECT grp FROM asg WHERE grp IS NOT NULL
    UNION SELECT grp FROM dir WHERE grp IS NOT NULL
    UNION
    SELECT c.id FROM ` + t.teams + ` c JOIN sub ON c.parent_team_id = sub.id)`)
	}
	b.WriteString(`
SELECT s.version, s.tenant_id::text, u.status,
    (SELECT json_agg(json_build_object('i', r.id, 'c', r.code, 'a', r.is_active,
            'p', ARRAY(SELECT p.code FROM ` + t.rolePerms + ` rp JOIN ` + t.perms + ` p ON p.id = rp.permission_id
                        WHERE rp.role_id = r.id ORDER BY p.code COLLATE "C"),
            'h', ARRAY(SELECT ri.inherited_role_id FROM ` + t.roleInherits + ` ri
                        WHERE ri.role_id = r.id ORDER BY ri.inherited_role_id)))
       FROM ` + t.roles + ` r WHERE r.id IN (SELECT id FROM reach)),
    (SELECT json_agg(json_build_object('r', role_id, 'g', grp, 'e', ` + micros("expires_at") + `)) FROM asg),
    (SELECT json_agg(json_build_object('c', code, 'y', is_granted, 'g', grp, 'e', ` + micros("expires_at") + `)) FROM dir),`)
	if t.teams != "" {
		b.WriteString(`
    ARRAY(SELECT team_id::text FROM mem),
    (SELECT json_object_agg(parent, kids) FROM (
        SELECT c.parent_team_id AS parent, array_agg(c.id) AS kids FROM ` + t.teams + ` c
         WHERE c.parent_team_id IN (SELECT id FROM sub) GROUP BY c.parent_team_id) d)`)
	} else {
		b.WriteString(`
    NULL::text[], NULL::json`)
	}
	b.WriteString(`
  FROM state s LEFT JOIN usr u ON true`)
	return b.String()
}

func platformLoaderSQL() string { return loaderSQL(platformTables()) }

// schemaQueries are the statements of one tenant schema, built once: the schema name is
// validated and quoted when they are built, never on the query path.
type schemaQueries struct {
	load, version, catalog string
}

func buildSchemaQueries(schema string) (*schemaQueries, error) {
	if !migrate.ValidSchemaName(schema) {
		return nil, fmt.Errorf("pgstore: schema %q: %w", schema, ErrInvalidSchemaName)
	}
	return &schemaQueries{
		load:    loaderSQL(tenantTables(schema)),
		version: `SELECT version FROM ` + pgx.Identifier{schema, "authz_state"}.Sanitize(),
		catalog: `SELECT code FROM ` + pgx.Identifier{schema, "permissions"}.Sanitize() +
			` WHERE NOT is_wildcard ORDER BY code COLLATE "C"`,
	}, nil
}

// queries returns the cached statements of a tenant schema.
func (s *Store) queries(schema string) (*schemaQueries, error) {
	if q, ok := s.schemas.Load(schema); ok {
		return q.(*schemaQueries), nil
	}
	q, err := buildSchemaQueries(schema)
	if err != nil {
		return nil, err
	}
	actual, _ := s.schemas.LoadOrStore(schema, q)
	return actual.(*schemaQueries), nil
}

// LoadTenantUser loads the RBAC facts of the user with external id externalID in tenant t, in
// one statement on the tenant's primary database (FillTenantUser may read a replica). An
// unknown user is not an error: the Input says UserKnown false and carries the version read.
// Any database error is returned as an error, never as an empty Input that would read as "no
// permission".
func (s *Store) LoadTenantUser(ctx context.Context, t Tenant, externalID string) (decision.Input, error) {
	q, err := s.queries(t.SchemaName)
	if err != nil {
		return decision.Input{}, err
	}
	pool, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return decision.Input{}, err
	}
	return s.loadFrom(ctx, pool, q, t, externalID, primaryQuery)
}

// loadFrom runs the loader of t on pool; query names it in db_query_duration_seconds.
func (s *Store) loadFrom(ctx context.Context, pool *pgxpool.Pool, q *schemaQueries, t Tenant, externalID, query string) (decision.Input, error) {
	ctx, cancel := s.timeout(ctx, query)
	defer cancel()
	in := decision.Input{Level: decision.LevelTenant, TenantID: t.ID, TenantKnown: true, TenantStatus: t.Status, UserID: externalID}
	stateTenant, err := scanLoad(pool.QueryRow(ctx, q.load, externalID), &in)
	if err != nil {
		return decision.Input{}, fmt.Errorf("pgstore: load user of tenant %s: %w", t.ID, err)
	}
	// A placement pointing at another tenant's schema must not hand out that tenant's grants.
	// NULL is a schema whose provisioning has not stamped it yet.
	if stateTenant != "" && stateTenant != t.ID {
		return decision.Input{}, fmt.Errorf("pgstore: schema %s of tenant %s belongs to tenant %s", t.SchemaName, t.ID, stateTenant)
	}
	return in, nil
}

// LoadPlatformUser loads the platform RBAC facts of the user with external id externalID from
// the admin database, in one statement. Groups are tenant ids.
func (s *Store) LoadPlatformUser(ctx context.Context, externalID string) (decision.Input, error) {
	ctx, cancel := s.timeout(ctx, "load_platform_user")
	defer cancel()
	in := decision.Input{Level: decision.LevelPlatform, UserID: externalID}
	if _, err := scanLoad(s.admin.QueryRow(ctx, s.platform, externalID), &in); err != nil {
		return decision.Input{}, fmt.Errorf("pgstore: load platform user: %w", err)
	}
	return in, nil
}

type roleJSON struct {
	ID       string   `json:"i"`
	Code     string   `json:"c"`
	Active   bool     `json:"a"`
	Perms    []string `json:"p"`
	Inherits []string `json:"h"`
}

type assignmentJSON struct {
	Role    string `json:"r"`
	Group   string `json:"g"`
	Expires *int64 `json:"e"`
}

type directJSON struct {
	Code    string `json:"c"`
	Granted bool   `json:"y"`
	Group   string `json:"g"`
	Expires *int64 `json:"e"`
}

// scanLoad reads the loader's row into in and returns authz_state.tenant_id ("" when NULL).
func scanLoad(row pgx.Row, in *decision.Input) (string, error) {
	var (
		version                           int64
		stateTenant, status               *string
		rolesRaw, asgRaw, dirRaw, descRaw []byte
		memberOf                          []string
	)
	if err := row.Scan(&version, &stateTenant, &status, &rolesRaw, &asgRaw, &dirRaw, &memberOf, &descRaw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", errors.New("authz_state has no row")
		}
		return "", err
	}
	if version <= 0 {
		return "", fmt.Errorf("authz_state version %d", version)
	}
	in.Version = uint64(version)
	if status == nil {
		return deref(stateTenant), nil
	}
	in.UserKnown, in.UserStatus = true, *status

	var roles []roleJSON
	var asgs []assignmentJSON
	var dirs []directJSON
	for _, c := range []struct {
		raw []byte
		v   any
	}{{rolesRaw, &roles}, {asgRaw, &asgs}, {dirRaw, &dirs}, {descRaw, &in.Descendants}} {
		if c.raw == nil {
			continue
		}
		if err := json.Unmarshal(c.raw, c.v); err != nil {
			return "", fmt.Errorf("decode loader row: %w", err)
		}
	}
	if len(roles) > 0 {
		in.Roles = make([]decision.Role, len(roles))
		for i, r := range roles {
			in.Roles[i] = decision.Role{ID: r.ID, Code: r.Code, Active: r.Active, Permissions: r.Perms, Inherits: r.Inherits}
		}
	}
	if len(asgs) > 0 {
		in.Assignments = make([]decision.Assignment, len(asgs))
		for i, a := range asgs {
			in.Assignments[i] = decision.Assignment{RoleID: a.Role, Group: a.Group, ExpiresAt: fromMicros(a.Expires)}
		}
	}
	if len(dirs) > 0 {
		in.Direct = make([]decision.DirectPermission, len(dirs))
		for i, d := range dirs {
			in.Direct[i] = decision.DirectPermission{Code: d.Code, Granted: d.Granted, Group: d.Group, ExpiresAt: fromMicros(d.Expires)}
		}
	}
	if len(memberOf) > 0 {
		in.MemberOf = memberOf
	}
	return deref(stateTenant), nil
}

func fromMicros(us *int64) time.Time {
	if us == nil {
		return time.Time{}
	}
	return time.UnixMicro(*us).UTC()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TenantVersion reads t's authz_state.version.
func (s *Store) TenantVersion(ctx context.Context, t Tenant) (uint64, error) {
	q, err := s.queries(t.SchemaName)
	if err != nil {
		return 0, err
	}
	pool, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.timeout(ctx, "tenant_version")
	defer cancel()
	var v int64
	if err := pool.QueryRow(ctx, q.version).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgstore: version of tenant %s: %w", t.ID, err)
	}
	return uint64(v), nil
}

// AdminVersion reads admin.authz_state.version (platform RBAC and tenant directory changes).
func (s *Store) AdminVersion(ctx context.Context) (uint64, error) {
	ctx, cancel := s.timeout(ctx, "admin_version")
	defer cancel()
	var v int64
	if err := s.admin.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgstore: admin version: %w", err)
	}
	return uint64(v), nil
}

// Catalog returns t's concrete permission codes (no wildcards), in byte order.
func (s *Store) Catalog(ctx context.Context, t Tenant) ([]string, error) {
	q, err := s.queries(t.SchemaName)
	if err != nil {
		return nil, err
	}
	pool, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return nil, err
	}
	return s.codes(ctx, pool.Query, q.catalog, "catalog of tenant "+t.ID)
}

// PlatformCatalog returns the concrete platform permission codes, in byte order.
func (s *Store) PlatformCatalog(ctx context.Context) ([]string, error) {
	return s.codes(ctx, s.admin.Query,
		`SELECT code FROM admin.platform_permissions WHERE NOT is_wildcard ORDER BY code COLLATE "C"`, "platform catalog")
}

func (s *Store) codes(ctx context.Context, query func(context.Context, string, ...any) (pgx.Rows, error), sql, what string) ([]string, error) {
	ctx, cancel := s.timeout(ctx, "catalog")
	defer cancel()
	rows, err := query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", what, err)
	}
	codes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", what, err)
	}
	return codes, nil
}
