package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
)

// Tenant RBAC lives in the tenant's schema on its regional database. Reads and writes go
// through the API's own write pools (pgstore's pools are read-only by design); every table is
// schema-qualified with pgx.Identifier, never through search_path.
func (s *Server) tenantRBACRoutes() []route {
	read, write := "rbac.read", "rbac.write"
	return []route{
		{Method: "GET", Path: v1Tenants + "/users", Permission: read, Tenant: "tenant", Summary: "List the tenant's users", Tag: "tenant-rbac", Response: "[]TenantUser", Query: pageQuery, Status: 200, handle: s.listTenantUsers},
		{Method: "POST", Path: v1Tenants + "/users", Permission: write, Tenant: "tenant", Summary: "Create a tenant user", Tag: "tenant-rbac", Request: "CreateTenantUser", Response: "TenantUser", Status: 201, handle: s.createTenantUser},
		{Method: "GET", Path: v1Tenants + "/permissions", Permission: read, Tenant: "tenant", Summary: "The tenant's permission catalog", Tag: "tenant-rbac", Response: "[]Permission", Query: pageQuery, Status: 200, handle: s.listTenantPermissions},
		{Method: "POST", Path: v1Tenants + "/permissions", Permission: write, Tenant: "tenant", Summary: "Add a code (resource.action.scope, scope own|team|tenant|*) to the tenant's catalog", Tag: "tenant-rbac", Request: "CreatePermission", Response: "Permission", Status: 201, handle: s.createTenantPermission},
		{Method: "DELETE", Path: v1Tenants + "/permissions/{permission}", Permission: write, Tenant: "tenant", Summary: "Remove a code (id or code) from the tenant's catalog (409 while a role or user permission uses it)", Tag: "tenant-rbac", Response: "Permission", Status: 200, handle: s.deleteTenantPermission},
		{Method: "GET", Path: v1Tenants + "/roles", Permission: read, Tenant: "tenant", Summary: "List roles with inherits and permissions", Tag: "tenant-rbac", Response: "[]Role", Status: 200, handle: s.listTenantRoles},
		{Method: "POST", Path: v1Tenants + "/roles", Permission: write, Tenant: "tenant", Summary: "Create a role (inherits, permissions from the catalog; no cycles)", Tag: "tenant-rbac", Request: "CreateRole", Response: "Role", Status: 201, handle: s.createTenantRole},
		{Method: "GET", Path: v1Tenants + "/roles/{role}", Permission: read, Tenant: "tenant", Summary: "Get a role (id or code) with inherited role codes and permission codes", Tag: "tenant-rbac", Response: "Role", Status: 200, handle: s.getTenantRole},
		{Method: "PATCH", Path: v1Tenants + "/roles/{role}", Permission: write, Tenant: "tenant", Summary: "Change a role; inherits and permissions replace the current sets (cycles 409, unknown codes 422)", Tag: "tenant-rbac", Request: "PatchRole", Response: "Role", Status: 200, handle: s.patchTenantRole},
		{Method: "DELETE", Path: v1Tenants + "/roles/{role}", Permission: write, Tenant: "tenant", Summary: "Delete a role (409 while assigned)", Tag: "tenant-rbac", Response: "Role", Status: 200, handle: s.deleteTenantRole},
		{Method: "POST", Path: v1Tenants + "/users/{user}/roles", Permission: write, Tenant: "tenant", Summary: "Assign a role to a user (optional team restriction, expiry)", Tag: "tenant-rbac", Request: "AssignRole", Response: "RoleAssignment", Status: 201, handle: s.assignTenantRole},
		{Method: "GET", Path: v1Tenants + "/users/{user}", Permission: read, Tenant: "tenant", Summary: "Get a user by id or external id", Tag: "tenant-rbac", Response: "TenantUser", Status: 200, handle: s.getTenantUser},
		{Method: "PATCH", Path: v1Tenants + "/users/{user}", Permission: write, Tenant: "tenant", Summary: "Change a user's status, email or display name", Tag: "tenant-rbac", Request: "PatchTenantUser", Response: "TenantUser", Status: 200, handle: s.patchTenantUser},
		{Method: "DELETE", Path: v1Tenants + "/users/{user}", Permission: write, Tenant: "tenant", Summary: "Delete a user with its memberships, assignments and direct permissions", Tag: "tenant-rbac", Response: "TenantUser", Status: 200, handle: s.deleteTenantUser},
		{Method: "GET", Path: v1Tenants + "/users/{user}/roles", Permission: read, Tenant: "tenant", Summary: "A user's role assignments", Tag: "tenant-rbac", Response: "[]UserRoleAssignment", Status: 200, handle: s.listTenantUserRoles},
		{Method: "DELETE", Path: v1Tenants + "/users/{user}/roles/{assignment}", Permission: write, Tenant: "tenant", Summary: "Revoke a role assignment", Tag: "tenant-rbac", Response: "UserRoleAssignment", Status: 200, handle: s.revokeTenantUserRole},
		{Method: "POST", Path: v1Tenants + "/users/{user}/permissions", Permission: write, Tenant: "tenant", Summary: "Grant (granted: true) or deny (granted: false) a catalog code directly, optionally restricted to a team", Tag: "tenant-rbac", Request: "AddUserPermission", Response: "UserPermission", Status: 201, handle: s.addTenantUserPermission},
		{Method: "GET", Path: v1Tenants + "/users/{user}/permissions", Permission: read, Tenant: "tenant", Summary: "A user's direct grants and denies", Tag: "tenant-rbac", Response: "[]UserPermission", Status: 200, handle: s.listTenantUserPermissions},
		{Method: "DELETE", Path: v1Tenants + "/users/{user}/permissions/{id}", Permission: write, Tenant: "tenant", Summary: "Remove a direct grant or deny", Tag: "tenant-rbac", Response: "UserPermission", Status: 200, handle: s.deleteTenantUserPermission},
		{Method: "POST", Path: v1Tenants + "/teams", Permission: write, Tenant: "tenant", Summary: "Create a team (optional parent team id or slug)", Tag: "tenant-rbac", Request: "CreateTeam", Response: "Team", Status: 201, handle: s.createTeam},
		{Method: "GET", Path: v1Tenants + "/teams", Permission: read, Tenant: "tenant", Summary: "List teams", Tag: "tenant-rbac", Response: "[]Team", Query: pageQuery, Status: 200, handle: s.listTeams},
		{Method: "GET", Path: v1Tenants + "/teams/{team}", Permission: read, Tenant: "tenant", Summary: "Get a team by id or slug", Tag: "tenant-rbac", Response: "Team", Status: 200, handle: s.getTeam},
		{Method: "PATCH", Path: v1Tenants + "/teams/{team}", Permission: write, Tenant: "tenant", Summary: "Rename a team or move it under another parent (null: the root); a cycle is a 409", Tag: "tenant-rbac", Request: "PatchTeam", Response: "Team", Status: 200, handle: s.patchTeam},
		{Method: "DELETE", Path: v1Tenants + "/teams/{team}", Permission: write, Tenant: "tenant", Summary: "Delete a team (409 while it has child teams)", Tag: "tenant-rbac", Response: "Team", Status: 200, handle: s.deleteTeam},
		{Method: "POST", Path: v1Tenants + "/teams/{team}/members", Permission: write, Tenant: "tenant", Summary: "Add a user (external id) to a team", Tag: "tenant-rbac", Request: "AddTeamMember", Response: "TeamMember", Status: 201, handle: s.addTeamMember},
		{Method: "GET", Path: v1Tenants + "/teams/{team}/members", Permission: read, Tenant: "tenant", Summary: "List a team's members", Tag: "tenant-rbac", Response: "[]TeamMember", Query: pageQuery, Status: 200, handle: s.listTeamMembers},
		{Method: "DELETE", Path: v1Tenants + "/teams/{team}/members/{user}", Permission: write, Tenant: "tenant", Summary: "Remove a user from a team", Tag: "tenant-rbac", Response: "TeamMember", Status: 200, handle: s.removeTeamMember},
		{Method: "GET", Path: v1Tenants + "/users/{user}/effective-permissions", Permission: read, Tenant: "tenant", Summary: "A user's effective permissions with the grant behind each, and the catalog codes an explicit deny removes", Tag: "tenant-rbac", Response: "[]EffectivePermission", Status: 200, handle: s.effectivePermissions},
	}
}

// writePool returns the API's pool on a tenant's database, opened once per (connection,
// database) and closed by Server.Close.
func (s *Server) writePool(ctx context.Context, connID, database string) (*pgxpool.Pool, error) {
	key := poolKey{connID, database}
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	if p, ok := s.pools[key]; ok {
		return p, nil
	}
	c, err := s.Registry.GetConnection(ctx, connID)
	if err != nil {
		return nil, err
	}
	if !c.IsActive {
		return nil, errConflict("the tenant's database connection " + c.Name + " is not active")
	}
	dsn, err := s.Registry.ConnString(c, database)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the connection string, password included.
		return nil, fmt.Errorf("database connection %s: connection settings do not parse", c.Name)
	}
	cfg.MaxConns = int32(max(1, min(c.PoolMax, 4)))
	p, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return nil, fmt.Errorf("database connection %s: open pool: %w", c.Name, err)
	}
	s.pools[key] = p
	return p, nil
}

// tenantDB is a tenant's schema on its database.
type tenantDB struct {
	pool   *pgxpool.Pool
	schema string
}

// table returns the qualified, quoted name of a table of the tenant's schema.
func (t tenantDB) table(name string) string { return pgx.Identifier{t.schema, name}.Sanitize() }

func (s *Server) tenantDB(c *call) (tenantDB, error) {
	t := c.tenant
	if t.Status == "deleted" || t.Status == "provisioning" {
		return tenantDB{}, errConflict("tenant " + t.Slug + " is " + t.Status)
	}
	return s.tenantDBOf(c.ctx(), *t)
}

// tenantDBOf opens (once) the write pool of t's database; t's status is not checked.
func (s *Server) tenantDBOf(ctx context.Context, t pgstore.Tenant) (tenantDB, error) {
	if !registry.ValidIdentifier(t.SchemaName) {
		return tenantDB{}, fmt.Errorf("tenant %s: invalid schema name", t.ID)
	}
	p, err := s.writePool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return tenantDB{}, err
	}
	return tenantDB{pool: p, schema: t.SchemaName}, nil
}

// tenantWrite runs fn in a transaction on the tenant's database and returns the tenant
// schema's authz_state.version after it. The audit record is inserted into the schema's
// audit_outbox in the same transaction, so it commits or rolls back with the change; right
// after the commit shipOutbox moves it to admin.audit_log. A failed ship is only logged: the
// record is durable in the outbox and the background shipper (MonitorAuditOutbox) retries.
// A schema not yet migrated to the outbox (tenant V3) falls back to appending right after
// the commit, where a crash in between can lose the audit row.
func (s *Server) tenantWrite(c *call, db tenantDB, fn func(tx pgx.Tx) (auditRecord, error)) (int64, error) {
	var rec auditRecord
	var version int64
	var outbox bool
	err := pgx.BeginFunc(c.ctx(), db.pool, func(tx pgx.Tx) error {
		var err error
		if rec, err = fn(tx); err != nil {
			return err
		}
		rec.Actor, rec.RequestID, rec.TenantID = c.actor(), c.requestID, c.tenant.ID
		err = tx.QueryRow(c.ctx(), `SELECT version, to_regclass($1) IS NOT NULL FROM `+db.table("authz_state"),
			db.table("audit_outbox")).Scan(&version, &outbox)
		if err != nil || !outbox {
			return err
		}
		return insertOutbox(c.ctx(), tx, db, rec)
	})
	if err != nil {
		return 0, err
	}
	c.wroteTenant(version)
	ctx := context.WithoutCancel(c.ctx())
	if !outbox {
		if err := appendAuditNow(ctx, s.Admin, rec); err != nil {
			c.log.Error("audit append after tenant write failed", "err", err)
			return 0, err
		}
		return version, nil
	}
	if _, err := s.shipOutbox(ctx, *c.tenant); err != nil {
		c.log.Error("audit outbox: ship after tenant write failed; the background shipper retries", "tenant", c.tenant.ID, "err", err)
	}
	return version, nil
}

// TenantUser is a user of a tenant.
type TenantUser struct {
	ID          string    `json:"id"`
	ExternalID  string    `json:"external_id"`
	Email       *string   `json:"email,omitempty"`
	DisplayName *string   `json:"display_name,omitempty"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
}

// CreateTenantUser is the body of POST /users.
type CreateTenantUser struct {
	ExternalID  string  `json:"external_id"`
	Email       *string `json:"email"`
	DisplayName *string `json:"display_name"`
}

func (s *Server) listTenantUsers(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(c.ctx(), `SELECT id::text, external_id, email, display_name, status, created_at, count(*) OVER ()
		FROM `+db.table("users")+` ORDER BY external_id LIMIT $1 OFFSET $2`, size, (page-1)*size)
	return collectPage(c, rows, err, page, size, func(row pgx.CollectableRow, total *int) (TenantUser, error) {
		var u TenantUser
		err := row.Scan(&u.ID, &u.ExternalID, &u.Email, &u.DisplayName, &u.Status, &u.CreatedAt, total)
		return u, err
	})
}

// collectPage answers with a page of rows selected with count(*) OVER () as their last
// column: the list (never null) and its page meta.
func collectPage[T any](c *call, rows pgx.Rows, err error, page, size int, scan func(row pgx.CollectableRow, total *int) (T, error)) error {
	if err != nil {
		return err
	}
	total := 0
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return scan(row, &total) })
	if err != nil {
		return err
	}
	if list == nil {
		list = []T{}
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) createTenantUser(c *call) error {
	var req CreateTenantUser
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.ExternalID == "" || len(req.ExternalID) > 255 {
		return errValidation("external_id", "the user's token sub is required (at most 255 characters)")
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var u TenantUser
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		err := tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("users")+` (external_id, email, display_name) VALUES ($1, $2, $3)
			RETURNING id::text, external_id, email, display_name, status, created_at`, req.ExternalID, req.Email, req.DisplayName).
			Scan(&u.ID, &u.ExternalID, &u.Email, &u.DisplayName, &u.Status, &u.CreatedAt)
		return auditRecord{Action: "tenant_user.create", TargetType: "tenant_user", TargetID: u.ID, After: u}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, u, map[string]any{"version": v})
}

// Permission is a catalog entry.
type Permission struct {
	ID          string  `json:"id"`
	Code        string  `json:"code"`
	Description *string `json:"description,omitempty"`
	IsWildcard  bool    `json:"is_wildcard"`
}

func (s *Server) listTenantPermissions(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(c.ctx(), `SELECT id::text, code, description, is_wildcard, count(*) OVER () FROM `+db.table("permissions")+`
		ORDER BY code COLLATE "C" LIMIT $1 OFFSET $2`, size, (page-1)*size)
	return collectPage(c, rows, err, page, size, func(row pgx.CollectableRow, total *int) (Permission, error) {
		var p Permission
		err := row.Scan(&p.ID, &p.Code, &p.Description, &p.IsWildcard, total)
		return p, err
	})
}

// createTenantPermission adds a code to the tenant's catalog. The engine's parser is the
// grammar, so a code it accepts is one it can decide on.
func (s *Server) createTenantPermission(c *call) error {
	var req CreatePermission
	if err := c.decode(&req); err != nil {
		return err
	}
	if _, err := decision.ParseCode(decision.LevelTenant, req.Code); err != nil {
		return errValidation("code", "not a tenant code resource.action.scope (lowercase [a-z0-9_-] segments or *, scope own, team, tenant or *): "+err.Error())
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var p Permission
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		err := tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("permissions")+` (code, description) VALUES ($1, $2)
			RETURNING id::text, code, description, is_wildcard`, req.Code, req.Description).Scan(&p.ID, &p.Code, &p.Description, &p.IsWildcard)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("permission " + req.Code + " already exists in the tenant's catalog")
		}
		if err != nil {
			return auditRecord{}, err
		}
		// A new code widens every wildcard grant matching it (the owner's *.*.* at least):
		// only someone who could grant it may add it.
		if err := s.guard(c, tx, lv, nil, []string{req.Code}, msgCannotGrant); err != nil {
			return auditRecord{}, err
		}
		return auditRecord{Action: "tenant_permission.create", TargetType: "tenant_permission", TargetID: p.ID, After: p}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, p, map[string]any{"version": v})
}

// deleteTenantPermission removes a code (by id or code) from the tenant's catalog; a code a
// role or a user permission still uses is a 409.
func (s *Server) deleteTenantPermission(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	ref := c.r.PathValue("permission")
	var p Permission
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		err := tx.QueryRow(c.ctx(), `DELETE FROM `+db.table("permissions")+` WHERE id::text = $1 OR code = $1
			RETURNING id::text, code, description, is_wildcard`, ref).Scan(&p.ID, &p.Code, &p.Description, &p.IsWildcard)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return auditRecord{}, errNotFound("permission " + ref + " is not in the tenant's catalog")
		case pgCode(err) == "23503":
			return auditRecord{}, errConflict("permission " + ref + " is still used by a role or a user permission")
		}
		return auditRecord{Action: "tenant_permission.delete", TargetType: "tenant_permission", TargetID: p.ID, Before: p}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, p, map[string]any{"version": v})
}

// Role is a tenant role with what it inherits and grants.
type Role struct {
	ID          string   `json:"id"`
	Code        string   `json:"code"`
	Name        string   `json:"name"`
	Description *string  `json:"description,omitempty"`
	Level       string   `json:"level"`
	IsSystem    bool     `json:"is_system"`
	IsActive    bool     `json:"is_active"`
	Inherits    []string `json:"inherits"`    // codes of inherited roles
	Permissions []string `json:"permissions"` // permission codes
}

// CreateRole is the body of POST /roles; inherits and permissions are codes.
type CreateRole struct {
	Code        string   `json:"code"`
	Name        string   `json:"name"`
	Level       string   `json:"level"`
	Inherits    []string `json:"inherits"`
	Permissions []string `json:"permissions"`
}

func roleQuery(db tenantDB) string {
	return `SELECT r.id::text, r.code, r.name, r.description, r.level, r.is_system, r.is_active,
		ARRAY(SELECT i.code FROM ` + db.table("role_inherits") + ` ri JOIN ` + db.table("roles") + ` i ON i.id = ri.inherited_role_id
		      WHERE ri.role_id = r.id ORDER BY i.code COLLATE "C"),
		ARRAY(SELECT p.code FROM ` + db.table("role_permissions") + ` rp JOIN ` + db.table("permissions") + ` p ON p.id = rp.permission_id
		      WHERE rp.role_id = r.id ORDER BY p.code COLLATE "C")
		FROM ` + db.table("roles") + ` r`
}

func scanRole(row pgx.Row) (Role, error) {
	var r Role
	err := row.Scan(&r.ID, &r.Code, &r.Name, &r.Description, &r.Level, &r.IsSystem, &r.IsActive, &r.Inherits, &r.Permissions)
	return r, err
}

func (s *Server) listTenantRoles(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(c.ctx(), roleQuery(db)+` ORDER BY r.code COLLATE "C"`)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Role, error) { return scanRole(row) })
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

var roleLevels = map[string]bool{"owner": true, "admin": true, "manager": true, "member": true, "viewer": true, "guest": true}

func (s *Server) createTenantRole(c *call) error {
	var req CreateRole
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Level == "" {
		req.Level = "member"
	}
	if req.Name == "" {
		req.Name = req.Code
	}
	fe := fieldErrors{}
	if !registry.ValidIdentifier(req.Code) {
		fe.add("code", "use lowercase letters, digits and underscores")
	}
	if !roleLevels[req.Level] {
		fe.add("level", "must be owner, admin, manager, member, viewer or guest")
	}
	if err := fe.err(); err != nil {
		return err
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var role Role
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		// No escalation: the role's codes and those of the roles it inherits.
		conferred, err := roleClosureCodes(c.ctx(), tx, lv.rt, req.Inherits)
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guard(c, tx, lv, nil, append(conferred, req.Permissions...), msgCannotGrant); err != nil {
			return auditRecord{}, err
		}
		var id string
		if err := tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("roles")+` (code, name, level) VALUES ($1, $2, $3) RETURNING id::text`,
			req.Code, req.Name, req.Level).Scan(&id); err != nil {
			return auditRecord{}, err
		}
		if err := addRolePermissions(c.ctx(), tx, db.roleTables(), id, req.Permissions); err != nil {
			return auditRecord{}, err
		}
		if err := addRoleInherits(c.ctx(), tx, db.roleTables(), id, req.Inherits); err != nil {
			return auditRecord{}, err
		}
		role, err = scanRole(tx.QueryRow(c.ctx(), roleQuery(db)+` WHERE r.id = $1::uuid`, id))
		return auditRecord{Action: "tenant_role.create", TargetType: "tenant_role", TargetID: id, After: role}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, role, map[string]any{"version": v})
}

// PatchRole is the body of PATCH /roles/{role}: absent fields stay as they are; inherits and
// permissions (codes) replace the role's current sets; description null clears it.
type PatchRole struct {
	Name        optional[string] `json:"name"`
	Description optional[string] `json:"description"`
	IsActive    *bool            `json:"is_active"`
	Inherits    *[]string        `json:"inherits"`
	Permissions *[]string        `json:"permissions"`
}

func (req PatchRole) validate() error {
	fe := fieldErrors{}
	if req.Name.Set && (req.Name.Value == nil || *req.Name.Value == "" || len(*req.Name.Value) > 200) {
		fe.add("name", "1 to 200 characters")
	}
	return fe.err()
}

// tenantRoleByRef loads the role named by the {role} path parameter (id or code).
func tenantRoleByRef(c *call, q querier, db tenantDB) (Role, error) {
	ref := c.r.PathValue("role")
	role, err := scanRole(q.QueryRow(c.ctx(), roleQuery(db)+` WHERE r.id::text = $1 OR r.code = $1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return Role{}, errNotFound("role " + ref + " does not exist")
	}
	return role, err
}

func (s *Server) getTenantRole(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	role, err := tenantRoleByRef(c, db.pool, db)
	if err != nil {
		return err
	}
	return c.ok(200, role, nil)
}

func (s *Server) patchTenantRole(c *call) error {
	var req PatchRole
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var before, after Role
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if before, err = tenantRoleByRef(c, tx, db); err != nil {
			return auditRecord{}, err
		}
		name, desc, active := before.Name, before.Description, before.IsActive
		if req.Name.Set {
			name = *req.Name.Value
		}
		if req.Description.Set {
			desc = req.Description.Value
		}
		if req.IsActive != nil {
			active = *req.IsActive
		}
		if err := s.guardRoleChange(c, tx, lv, before.ID, before.IsActive, active, before.Permissions, req.Permissions, before.Inherits, req.Inherits); err != nil {
			return auditRecord{}, err
		}
		if _, err := tx.Exec(c.ctx(), `UPDATE `+db.table("roles")+` SET name = $2, description = $3, is_active = $4, updated_at = now() WHERE id = $1::uuid`,
			before.ID, name, desc, active); err != nil {
			return auditRecord{}, err
		}
		if err := replaceRoleLinks(c.ctx(), tx, db.roleTables(), before.ID, req.Inherits, req.Permissions); err != nil {
			return auditRecord{}, err
		}
		after, err = scanRole(tx.QueryRow(c.ctx(), roleQuery(db)+` WHERE r.id = $1::uuid`, before.ID))
		return auditRecord{Action: "tenant_role.update", TargetType: "tenant_role", TargetID: before.ID, Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deleteTenantRole(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var role Role
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		role, err = scanRole(tx.QueryRow(c.ctx(), roleQuery(db)+` WHERE r.id::text = $1 OR r.code = $1`, c.r.PathValue("role")))
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("role " + c.r.PathValue("role") + " does not exist")
		}
		if err != nil {
			return auditRecord{}, err
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM `+db.table("roles")+` WHERE id = $1::uuid`, role.ID)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" {
			return auditRecord{}, errConflict("role " + role.Code + " is still assigned: revoke its assignments first")
		}
		return auditRecord{Action: "tenant_role.delete", TargetType: "tenant_role", TargetID: role.ID, Before: role}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, role, map[string]any{"version": v})
}

// AssignRole is the body of POST /users/{user}/roles.
type AssignRole struct {
	Role      string     `json:"role"`    // id or code
	TeamID    string     `json:"team_id"` // optional: id or slug of the team the assignment is restricted to
	ExpiresAt *time.Time `json:"expires_at"`
}

// RoleAssignment is a user's role assignment.
type RoleAssignment struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	RoleID    string     `json:"role_id"`
	Role      string     `json:"role"`
	TeamID    *string    `json:"team_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (s *Server) assignTenantRole(c *call) error {
	var req AssignRole
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.Role == "" {
		fe.add("role", "required: a role id or code")
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.Now()) {
		fe.add("expires_at", "must be in the future")
	}
	if err := fe.err(); err != nil {
		return err
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var a RoleAssignment
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		err := tx.QueryRow(c.ctx(), `SELECT id::text FROM `+db.table("users")+` WHERE id::text = $1 OR external_id = $1`, c.r.PathValue("user")).Scan(&a.UserID)
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("user " + c.r.PathValue("user") + " does not exist")
		}
		if err != nil {
			return auditRecord{}, err
		}
		err = tx.QueryRow(c.ctx(), `SELECT id::text, code FROM `+db.table("roles")+` WHERE id::text = $1 OR code = $1`, req.Role).Scan(&a.RoleID, &a.Role)
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errValidation("role", "no role "+req.Role)
		}
		if err != nil {
			return auditRecord{}, err
		}
		if req.TeamID != "" {
			var team string
			err = tx.QueryRow(c.ctx(), `SELECT id::text FROM `+db.table("teams")+` WHERE id::text = $1 OR slug = $1`, req.TeamID).Scan(&team)
			if errors.Is(err, pgx.ErrNoRows) {
				return auditRecord{}, errValidation("team_id", "no team "+req.TeamID)
			}
			if err != nil {
				return auditRecord{}, err
			}
			a.TeamID = &team
		}
		conferred, err := roleClosureCodes(c.ctx(), tx, lv.rt, []string{a.RoleID})
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guard(c, tx, lv, a.TeamID, conferred, msgCannotGrant); err != nil {
			return auditRecord{}, err
		}
		a.ExpiresAt = req.ExpiresAt
		err = tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("user_roles")+` (user_id, role_id, team_id, expires_at, granted_by)
			VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5) RETURNING id::text`, a.UserID, a.RoleID, a.TeamID, a.ExpiresAt, c.actor()).Scan(&a.ID)
		return auditRecord{Action: "tenant_user_role.assign", TargetType: "tenant_user", TargetID: a.UserID, After: a}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, a, map[string]any{"version": v})
}

// EffectivePermission is one code a user holds, with the grant the engine matched, or a
// catalog code an explicit deny takes away (allowed false, reason "explicit deny").
type EffectivePermission struct {
	Permission string `json:"permission"`
	Allowed    bool   `json:"allowed"`
	Reason     string `json:"reason"`
	GrantCode  string `json:"grant_code"`
	Direct     bool   `json:"direct"`
	Role       string `json:"role,omitempty"`
	TeamID     string `json:"team_id,omitempty"`
}

func (s *Server) effectivePermissions(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var external string
	err = db.pool.QueryRow(c.ctx(), `SELECT external_id FROM `+db.table("users")+` WHERE id::text = $1 OR external_id = $1`, c.r.PathValue("user")).Scan(&external)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound("user " + c.r.PathValue("user") + " does not exist")
	}
	if err != nil {
		return err
	}
	in, err := s.Store.LoadTenantUser(c.ctx(), *c.tenant, external)
	if err != nil {
		return err
	}
	catalog, err := s.Store.Catalog(c.ctx(), *c.tenant)
	if err != nil {
		return err
	}
	now := s.Now()
	set, err := decision.Compile(in, now)
	if err != nil {
		return err
	}
	out := []EffectivePermission{}
	allowed := set.ListPermissions(now, catalog)
	for _, p := range allowed {
		d, err := set.Check(now, decision.Request{Permission: p})
		if err != nil {
			return err
		}
		out = append(out, EffectivePermission{Permission: p, Allowed: true, Reason: d.Reason.String(), GrantCode: d.Grant.Code,
			Direct: d.Grant.Direct, Role: d.Grant.Role, TeamID: d.Grant.Group})
	}
	// A deny shows only as an absence in the list above; an administrator asking "why can't
	// she?" needs to see it, so every other catalog code a deny takes away is listed too.
	for _, p := range catalog {
		if slices.Contains(allowed, p) {
			continue
		}
		d, err := set.Check(now, decision.Request{Permission: p})
		if err != nil {
			continue // not a concrete code of this level: not something a request can carry
		}
		if d.Reason == decision.ReasonExplicitDeny {
			out = append(out, EffectivePermission{Permission: p, Reason: d.Reason.String()})
		}
	}
	slices.SortFunc(out, func(a, b EffectivePermission) int { return strings.Compare(a.Permission, b.Permission) })
	return c.ok(200, out, map[string]any{"total": len(out), "version": set.Version()})
}
