package adminapi

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/registry"
)

// Platform RBAC lives in the admin database, so every change commits in one transaction with
// its audit row (adminWrite) and returns admin.authz_state's version. All routes are platform
// scope code checks, and every write that confers permissions (role assignments, direct grants,
// roles created or given more codes or inherits) passes the no-escalation guard
// (guardConferral, escalation.go): an actor can only confer codes it holds itself, on the tenant
// the conferral is restricted to or, unrestricted, platform-wide.
func (s *Server) platformRBACRoutes() []route {
	const (
		usersRead, usersCreate, usersUpdate = "platform_users.read.platform", "platform_users.create.platform", "platform_users.update.platform"
		usersDelete, usersWrite             = "platform_users.delete.platform", "platform_users.write.platform"
		rolesRead, rolesCreate              = "platform_roles.read.platform", "platform_roles.create.platform"
		rolesUpdate, rolesDelete            = "platform_roles.update.platform", "platform_roles.delete.platform"
		catalogRead, catalogWrite           = "rbac.read.platform", "rbac.write.platform"
		tag                                 = "platform-rbac"
	)
	u := v1Admin + "/platform-users"
	r := v1Admin + "/platform-roles"
	return []route{
		{Method: "POST", Path: u, Permission: usersCreate, Summary: "Create a platform user", Tag: tag, Request: "CreatePlatformUser", Response: "PlatformUser", Status: 201, handle: s.createPlatformUser},
		{Method: "GET", Path: u, Permission: usersRead, Summary: "List platform users", Tag: tag, Response: "[]PlatformUser", Query: pageQuery, Status: 200, handle: s.listPlatformUsers},
		{Method: "GET", Path: u + "/{user}", Permission: usersRead, Summary: "Get a platform user by id or external id", Tag: tag, Response: "PlatformUser", Status: 200, handle: s.getPlatformUser},
		{Method: "PATCH", Path: u + "/{user}", Permission: usersUpdate, Summary: "Change a platform user's status or email", Tag: tag, Request: "PatchPlatformUser", Response: "PlatformUser", Status: 200, handle: s.patchPlatformUser},
		{Method: "DELETE", Path: u + "/{user}", Permission: usersDelete, Summary: "Delete a platform user with its assignments and direct permissions", Tag: tag, Response: "PlatformUser", Status: 200, handle: s.deletePlatformUser},
		{Method: "POST", Path: u + "/{user}/roles", Permission: usersWrite, Summary: "Assign a platform role (optionally restricted to a tenant, id or slug)", Tag: tag, Request: "AssignPlatformRole", Response: "PlatformRoleAssignment", Status: 201, handle: s.assignPlatformRole},
		{Method: "GET", Path: u + "/{user}/roles", Permission: usersRead, Summary: "A platform user's role assignments", Tag: tag, Response: "[]PlatformRoleAssignment", Status: 200, handle: s.listPlatformUserRoles},
		{Method: "DELETE", Path: u + "/{user}/roles/{assignment}", Permission: usersWrite, Summary: "Revoke a platform role assignment", Tag: tag, Response: "PlatformRoleAssignment", Status: 200, handle: s.revokePlatformRole},
		{Method: "POST", Path: u + "/{user}/permissions", Permission: usersWrite, Summary: "Grant (granted: true) or deny (granted: false) a platform code directly, optionally restricted to a tenant", Tag: tag, Request: "AddPlatformUserPermission", Response: "PlatformUserPermission", Status: 201, handle: s.addPlatformUserPermission},
		{Method: "GET", Path: u + "/{user}/permissions", Permission: usersRead, Summary: "A platform user's direct grants and denies", Tag: tag, Response: "[]PlatformUserPermission", Status: 200, handle: s.listPlatformUserPermissions},
		{Method: "DELETE", Path: u + "/{user}/permissions/{id}", Permission: usersWrite, Summary: "Remove a platform user's direct grant or deny", Tag: tag, Response: "PlatformUserPermission", Status: 200, handle: s.deletePlatformUserPermission},
		{Method: "GET", Path: r, Permission: rolesRead, Summary: "List platform roles with inherits and permissions", Tag: tag, Response: "[]PlatformRole", Status: 200, handle: s.listPlatformRoles},
		{Method: "POST", Path: r, Permission: rolesCreate, Summary: "Create a platform role (inherits, permissions from the catalog; no cycles)", Tag: tag, Request: "CreatePlatformRole", Response: "PlatformRole", Status: 201, handle: s.createPlatformRole},
		{Method: "GET", Path: r + "/{role}", Permission: rolesRead, Summary: "Get a platform role by id or code", Tag: tag, Response: "PlatformRole", Status: 200, handle: s.getPlatformRole},
		{Method: "PATCH", Path: r + "/{role}", Permission: rolesUpdate, Summary: "Change a platform role; inherits and permissions replace the current sets (cycles 409)", Tag: tag, Request: "PatchRole", Response: "PlatformRole", Status: 200, handle: s.patchPlatformRole},
		{Method: "DELETE", Path: r + "/{role}", Permission: rolesDelete, Summary: "Delete a platform role (409 while assigned or for system roles)", Tag: tag, Response: "PlatformRole", Status: 200, handle: s.deletePlatformRole},
		{Method: "GET", Path: v1Admin + "/platform-permissions", Permission: catalogRead, Summary: "The platform permission catalog", Tag: tag, Response: "[]Permission", Status: 200, handle: s.listPlatformPermissions},
		{Method: "POST", Path: v1Admin + "/platform-permissions", Permission: catalogWrite, Summary: "Add a code (resource.action.scope, scope user|tenant|platform|*) to the platform catalog", Tag: tag, Request: "CreatePlatformPermission", Response: "Permission", Status: 201, handle: s.createPlatformPermission},
	}
}

// PlatformUser is a platform administrator (its external id is the platform token's sub).
type PlatformUser struct {
	ID         string    `json:"id"`
	ExternalID string    `json:"external_id"`
	Email      *string   `json:"email,omitempty"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// CreatePlatformUser is the body of POST /platform-users.
type CreatePlatformUser struct {
	ExternalID string  `json:"external_id"`
	Email      *string `json:"email"`
}

// PatchPlatformUser is the body of PATCH /platform-users/{user}; email null clears it.
type PatchPlatformUser struct {
	Status optional[string] `json:"status"`
	Email  optional[string] `json:"email"`
}

// PlatformRole is a platform role with what it inherits and grants.
type PlatformRole struct {
	ID          string   `json:"id"`
	Code        string   `json:"code"`
	Name        string   `json:"name"`
	Description *string  `json:"description,omitempty"`
	IsSystem    bool     `json:"is_system"`
	IsActive    bool     `json:"is_active"`
	Inherits    []string `json:"inherits"`
	Permissions []string `json:"permissions"`
}

// CreatePlatformRole is the body of POST /platform-roles; inherits and permissions are codes.
type CreatePlatformRole struct {
	Code        string   `json:"code"`
	Name        string   `json:"name"`
	Description *string  `json:"description"`
	Inherits    []string `json:"inherits"`
	Permissions []string `json:"permissions"`
}

// CreatePermission is the body of POST /platform-permissions.
type CreatePermission struct {
	Code        string  `json:"code"`
	Description *string `json:"description"`
}

// AssignPlatformRole is the body of POST /platform-users/{user}/roles.
type AssignPlatformRole struct {
	Role      string     `json:"role"`      // id or code
	TenantID  string     `json:"tenant_id"` // optional: tenant id or slug the assignment is restricted to
	ExpiresAt *time.Time `json:"expires_at"`
}

// PlatformRoleAssignment is a platform user's role assignment.
type PlatformRoleAssignment struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	RoleID    string     `json:"role_id"`
	Role      string     `json:"role"`
	TenantID  *string    `json:"tenant_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	GrantedBy *string    `json:"granted_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// AddPlatformUserPermission is the body of POST /platform-users/{user}/permissions; granted is
// required so a deny is always written on purpose.
type AddPlatformUserPermission struct {
	Code      string     `json:"code"`
	Granted   *bool      `json:"granted"`
	TenantID  string     `json:"tenant_id"` // optional: tenant id or slug the grant or deny is restricted to
	ExpiresAt *time.Time `json:"expires_at"`
}

// PlatformUserPermission is a platform user's direct grant or deny.
type PlatformUserPermission struct {
	ID           string     `json:"id"`
	UserID       string     `json:"user_id"`
	PermissionID string     `json:"permission_id"`
	Code         string     `json:"code"`
	Granted      bool       `json:"granted"`
	TenantID     *string    `json:"tenant_id,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	GrantedBy    *string    `json:"granted_by,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

const platformUserColumns = `id::text, external_id, email, status, created_at, updated_at`

func scanPlatformUser(row pgx.Row) (PlatformUser, error) {
	var u PlatformUser
	err := row.Scan(&u.ID, &u.ExternalID, &u.Email, &u.Status, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// platformUserByRef loads the user of the {user} path parameter (id or external id).
func platformUserByRef(c *call, q querier) (PlatformUser, error) {
	ref := c.r.PathValue("user")
	u, err := scanPlatformUser(q.QueryRow(c.ctx(), `SELECT `+platformUserColumns+` FROM admin.platform_users WHERE id::text = $1 OR external_id = $1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return PlatformUser{}, errNotFound("platform user " + ref + " does not exist")
	}
	return u, err
}

// tenantRef resolves a tenant named in a body (id or slug): a missing tenant is a 422.
func tenantRef(c *call, q querier, field, ref string) (*string, error) {
	if ref == "" {
		return nil, nil
	}
	id, found, err := lookupID(c.ctx(), q, "admin.tenants", "slug", ref)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errValidation(field, "no tenant "+ref)
	}
	return &id, nil
}

func (s *Server) createPlatformUser(c *call) error {
	var req CreatePlatformUser
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.ExternalID == "" || len(req.ExternalID) > 255 {
		fe.add("external_id", "the user's platform token sub is required (at most 255 characters)")
	}
	if req.Email != nil && len(*req.Email) > 320 {
		fe.add("email", "at most 320 characters")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var u PlatformUser
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		u, err = scanPlatformUser(tx.QueryRow(c.ctx(), `INSERT INTO admin.platform_users (external_id, email) VALUES ($1, $2) RETURNING `+platformUserColumns,
			req.ExternalID, req.Email))
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("platform user " + req.ExternalID + " already exists")
		}
		return auditRecord{Action: "platform_user.create", TargetType: "platform_user", TargetID: u.ID, After: u}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, u, map[string]any{"version": v})
}

func (s *Server) listPlatformUsers(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	total := 0
	rows, err := s.Admin.Query(c.ctx(), `SELECT `+platformUserColumns+`, count(*) OVER () FROM admin.platform_users
		ORDER BY external_id COLLATE "C" LIMIT $1 OFFSET $2`, size, (page-1)*size)
	list, err := collect(rows, err, func(row pgx.Row) (PlatformUser, error) {
		var u PlatformUser
		err := row.Scan(&u.ID, &u.ExternalID, &u.Email, &u.Status, &u.CreatedAt, &u.UpdatedAt, &total)
		return u, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) getPlatformUser(c *call) error {
	u, err := platformUserByRef(c, s.Admin)
	if err != nil {
		return err
	}
	return c.ok(200, u, nil)
}

// refuseSelf keeps an administrator from locking itself out by mistake; another
// administrator can still do it.
func refuseSelf(c *call, u PlatformUser, what string) error {
	if u.ExternalID == c.actor() {
		return errConflict("you cannot " + what + " yourself; ask another platform administrator")
	}
	return nil
}

func (s *Server) patchPlatformUser(c *call) error {
	var req PatchPlatformUser
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.Status.Set && (req.Status.Value == nil || !userStatuses[*req.Status.Value]) {
		fe.add("status", "must be active, inactive or suspended")
	}
	if req.Email.Value != nil && len(*req.Email.Value) > 320 {
		fe.add("email", "at most 320 characters")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var before, after PlatformUser
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if before, err = platformUserByRef(c, tx); err != nil {
			return auditRecord{}, err
		}
		status, email := before.Status, before.Email
		if req.Status.Set {
			status = *req.Status.Value
			if status != "active" {
				if err := refuseSelf(c, before, "deactivate"); err != nil {
					return auditRecord{}, err
				}
			}
			// Re-activating confers everything the user holds; suspending acts on it.
			if err := s.guardStatusChange(c, tx, c.platformLevel(), before.ID, before.Status, status); err != nil {
				return auditRecord{}, err
			}
		}
		if req.Email.Set {
			email = req.Email.Value
		}
		after, err = scanPlatformUser(tx.QueryRow(c.ctx(), `UPDATE admin.platform_users SET status = $2, email = $3, updated_at = now()
			WHERE id = $1::uuid RETURNING `+platformUserColumns, before.ID, status, email))
		return auditRecord{Action: "platform_user.update", TargetType: "platform_user", TargetID: before.ID, Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deletePlatformUser(c *call) error {
	var u PlatformUser
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if u, err = platformUserByRef(c, tx); err != nil {
			return auditRecord{}, err
		}
		if err := refuseSelf(c, u, "delete"); err != nil {
			return auditRecord{}, err
		}
		if err := s.guardActOn(c, tx, c.platformLevel(), u.ID, msgCannotActOn); err != nil {
			return auditRecord{}, err
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM admin.platform_users WHERE id = $1::uuid`, u.ID)
		return auditRecord{Action: "platform_user.delete", TargetType: "platform_user", TargetID: u.ID, Before: u}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, u, map[string]any{"version": v})
}

const platformRoleQuery = `SELECT r.id::text, r.code, r.name, r.description, r.is_system, r.is_active,
	ARRAY(SELECT i.code FROM admin.platform_role_inherits ri JOIN admin.platform_roles i ON i.id = ri.inherited_role_id
	      WHERE ri.role_id = r.id ORDER BY i.code COLLATE "C"),
	ARRAY(SELECT p.code FROM admin.platform_role_permissions rp JOIN admin.platform_permissions p ON p.id = rp.permission_id
	      WHERE rp.role_id = r.id ORDER BY p.code COLLATE "C")
	FROM admin.platform_roles r`

func scanPlatformRole(row pgx.Row) (PlatformRole, error) {
	var r PlatformRole
	err := row.Scan(&r.ID, &r.Code, &r.Name, &r.Description, &r.IsSystem, &r.IsActive, &r.Inherits, &r.Permissions)
	return r, err
}

func platformRoleByRef(c *call, q querier) (PlatformRole, error) {
	ref := c.r.PathValue("role")
	r, err := scanPlatformRole(q.QueryRow(c.ctx(), platformRoleQuery+` WHERE r.id::text = $1 OR r.code = $1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return PlatformRole{}, errNotFound("platform role " + ref + " does not exist")
	}
	return r, err
}

func (s *Server) listPlatformRoles(c *call) error {
	rows, err := s.Admin.Query(c.ctx(), platformRoleQuery+` ORDER BY r.code COLLATE "C"`)
	list, err := collect(rows, err, scanPlatformRole)
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

func (s *Server) getPlatformRole(c *call) error {
	r, err := platformRoleByRef(c, s.Admin)
	if err != nil {
		return err
	}
	return c.ok(200, r, nil)
}

func (s *Server) createPlatformRole(c *call) error {
	var req CreatePlatformRole
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = req.Code
	}
	fe := fieldErrors{}
	if !registry.ValidIdentifier(req.Code) {
		fe.add("code", "use lowercase letters, digits and underscores")
	}
	if len(req.Name) > 200 {
		fe.add("name", "at most 200 characters")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var role PlatformRole
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		// No escalation: the new role's codes and those of the roles it inherits.
		conferred, err := roleClosureCodes(c.ctx(), tx, platformRoleTables, req.Inherits)
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guardConferral(c, tx, nil, append(conferred, req.Permissions...)); err != nil {
			return auditRecord{}, err
		}
		var id string
		err = tx.QueryRow(c.ctx(), `INSERT INTO admin.platform_roles (code, name, description) VALUES ($1, $2, $3) RETURNING id::text`,
			req.Code, req.Name, req.Description).Scan(&id)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("platform role " + req.Code + " already exists")
		}
		if err != nil {
			return auditRecord{}, err
		}
		if err := addRolePermissions(c.ctx(), tx, platformRoleTables, id, req.Permissions); err != nil {
			return auditRecord{}, err
		}
		if err := addRoleInherits(c.ctx(), tx, platformRoleTables, id, req.Inherits); err != nil {
			return auditRecord{}, err
		}
		role, err = scanPlatformRole(tx.QueryRow(c.ctx(), platformRoleQuery+` WHERE r.id = $1::uuid`, id))
		return auditRecord{Action: "platform_role.create", TargetType: "platform_role", TargetID: id, After: role}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, role, map[string]any{"version": v})
}

func (s *Server) patchPlatformRole(c *call) error {
	var req PatchRole
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	var before, after PlatformRole
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if before, err = platformRoleByRef(c, tx); err != nil {
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
		// No escalation: the codes added to the role, those of the roles it newly inherits and,
		// when re-activated, everything it holds.
		if err := s.guardRoleChange(c, tx, c.platformLevel(), before.ID, before.IsActive, active,
			before.Permissions, req.Permissions, before.Inherits, req.Inherits); err != nil {
			return auditRecord{}, err
		}

		if _, err := tx.Exec(c.ctx(), `UPDATE admin.platform_roles SET name = $2, description = $3, is_active = $4, updated_at = now() WHERE id = $1::uuid`,
			before.ID, name, desc, active); err != nil {
			return auditRecord{}, err
		}
		if err := replaceRoleLinks(c.ctx(), tx, platformRoleTables, before.ID, req.Inherits, req.Permissions); err != nil {
			return auditRecord{}, err
		}
		after, err = scanPlatformRole(tx.QueryRow(c.ctx(), platformRoleQuery+` WHERE r.id = $1::uuid`, before.ID))
		return auditRecord{Action: "platform_role.update", TargetType: "platform_role", TargetID: before.ID, Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deletePlatformRole(c *call) error {
	var role PlatformRole
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if role, err = platformRoleByRef(c, tx); err != nil {
			return auditRecord{}, err
		}
		// Bootstrap and the documented defaults rely on the system roles existing.
		if role.IsSystem {
			return auditRecord{}, errConflict("platform role " + role.Code + " is a system role and cannot be deleted")
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM admin.platform_roles WHERE id = $1::uuid`, role.ID)
		if pgCode(err) == "23503" {
			return auditRecord{}, errConflict("platform role " + role.Code + " is still assigned: revoke its assignments first")
		}
		return auditRecord{Action: "platform_role.delete", TargetType: "platform_role", TargetID: role.ID, Before: role}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, role, map[string]any{"version": v})
}

func (s *Server) listPlatformPermissions(c *call) error {
	rows, err := s.Admin.Query(c.ctx(), `SELECT id::text, code, description, is_wildcard FROM admin.platform_permissions ORDER BY code COLLATE "C"`)
	list, err := collect(rows, err, func(row pgx.Row) (Permission, error) {
		var p Permission
		err := row.Scan(&p.ID, &p.Code, &p.Description, &p.IsWildcard)
		return p, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

func (s *Server) createPlatformPermission(c *call) error {
	var req CreatePermission
	if err := c.decode(&req); err != nil {
		return err
	}
	// The engine's parser is the grammar: a code it accepts is one it can decide on.
	if _, err := decision.ParseCode(decision.LevelPlatform, req.Code); err != nil {
		return errValidation("code", "not a platform code resource.action.scope (lowercase [a-z0-9_-] segments or *, scope user, tenant, platform or *): "+err.Error())
	}
	var p Permission
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		err := tx.QueryRow(c.ctx(), `INSERT INTO admin.platform_permissions (code, description) VALUES ($1, $2)
			RETURNING id::text, code, description, is_wildcard`, req.Code, req.Description).Scan(&p.ID, &p.Code, &p.Description, &p.IsWildcard)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("platform permission " + req.Code + " already exists")
		}
		if err != nil {
			return auditRecord{}, err
		}
		// A new code widens every wildcard grant matching it (*.*.* at least): only someone who
		// could grant it may add it. Checked with the code in the catalog, before the commit.
		if err := s.guardConferral(c, tx, nil, []string{req.Code}); err != nil {
			return auditRecord{}, err
		}
		return auditRecord{Action: "platform_permission.create", TargetType: "platform_permission", TargetID: p.ID, After: p}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, p, map[string]any{"version": v})
}

const platformUserRoleQuery = `SELECT ur.id::text, ur.user_id::text, ur.role_id::text, r.code, ur.tenant_id::text, ur.expires_at, ur.granted_by, ur.created_at
	FROM admin.platform_user_roles ur JOIN admin.platform_roles r ON r.id = ur.role_id`

func scanPlatformUserRole(row pgx.Row) (PlatformRoleAssignment, error) {
	var a PlatformRoleAssignment
	err := row.Scan(&a.ID, &a.UserID, &a.RoleID, &a.Role, &a.TenantID, &a.ExpiresAt, &a.GrantedBy, &a.CreatedAt)
	return a, err
}

func (s *Server) assignPlatformRole(c *call) error {
	var req AssignPlatformRole
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.Role == "" {
		fe.add("role", "required: a platform role id or code")
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.Now()) {
		fe.add("expires_at", "must be in the future")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var a PlatformRoleAssignment
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		u, err := platformUserByRef(c, tx)
		if err != nil {
			return auditRecord{}, err
		}
		roleID, found, err := lookupID(c.ctx(), tx, "admin.platform_roles", "code", req.Role)
		if err != nil {
			return auditRecord{}, err
		}
		if !found {
			return auditRecord{}, errValidation("role", "no platform role "+req.Role)
		}
		tenant, err := tenantRef(c, tx, "tenant_id", req.TenantID)
		if err != nil {
			return auditRecord{}, err
		}
		// No escalation: the role's codes and those of the active roles it inherits.
		conferred, err := roleClosureCodes(c.ctx(), tx, platformRoleTables, []string{roleID})
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guardConferral(c, tx, tenant, conferred); err != nil {
			return auditRecord{}, err
		}
		var id string
		err = tx.QueryRow(c.ctx(), `INSERT INTO admin.platform_user_roles (user_id, role_id, tenant_id, expires_at, granted_by)
			VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5) RETURNING id::text`, u.ID, roleID, tenant, req.ExpiresAt, c.actor()).Scan(&id)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("platform user " + u.ExternalID + " already holds this role with this restriction")
		}
		if err != nil {
			return auditRecord{}, err
		}
		a, err = scanPlatformUserRole(tx.QueryRow(c.ctx(), platformUserRoleQuery+` WHERE ur.id = $1::uuid`, id))
		rec := auditRecord{Action: "platform_user_role.assign", TargetType: "platform_user", TargetID: u.ID, After: a}
		if tenant != nil {
			rec.TenantID = *tenant
		}
		return rec, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, a, map[string]any{"version": v})
}

func (s *Server) listPlatformUserRoles(c *call) error {
	u, err := platformUserByRef(c, s.Admin)
	if err != nil {
		return err
	}
	rows, err := s.Admin.Query(c.ctx(), platformUserRoleQuery+` WHERE ur.user_id = $1::uuid ORDER BY r.code COLLATE "C", ur.tenant_id NULLS FIRST`, u.ID)
	list, err := collect(rows, err, scanPlatformUserRole)
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

func (s *Server) revokePlatformRole(c *call) error {
	var a PlatformRoleAssignment
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		u, err := platformUserByRef(c, tx)
		if err != nil {
			return auditRecord{}, err
		}
		id := c.r.PathValue("assignment")
		a, err = scanPlatformUserRole(tx.QueryRow(c.ctx(), platformUserRoleQuery+` WHERE ur.id::text = $1 AND ur.user_id = $2::uuid`, id, u.ID))
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("platform user " + u.ExternalID + " has no role assignment " + id)
		}
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guardActOn(c, tx, c.platformLevel(), u.ID, msgCannotActOn); err != nil {
			return auditRecord{}, err
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM admin.platform_user_roles WHERE id = $1::uuid`, a.ID)
		rec := auditRecord{Action: "platform_user_role.revoke", TargetType: "platform_user", TargetID: u.ID, Before: a}
		if a.TenantID != nil {
			rec.TenantID = *a.TenantID
		}
		return rec, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, a, map[string]any{"version": v})
}

const platformUserPermissionQuery = `SELECT up.id::text, up.user_id::text, up.permission_id::text, p.code, up.is_granted, up.tenant_id::text, up.expires_at, up.granted_by, up.created_at
	FROM admin.platform_user_permissions up JOIN admin.platform_permissions p ON p.id = up.permission_id`

func scanPlatformUserPermission(row pgx.Row) (PlatformUserPermission, error) {
	var p PlatformUserPermission
	err := row.Scan(&p.ID, &p.UserID, &p.PermissionID, &p.Code, &p.Granted, &p.TenantID, &p.ExpiresAt, &p.GrantedBy, &p.CreatedAt)
	return p, err
}

func (s *Server) addPlatformUserPermission(c *call) error {
	var req AddPlatformUserPermission
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.Code == "" {
		fe.add("code", "required: a code of the platform catalog")
	}
	if req.Granted == nil {
		fe.add("granted", "required: true for a grant, false for an explicit deny")
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.Now()) {
		fe.add("expires_at", "must be in the future")
	}
	if err := fe.err(); err != nil {
		return err
	}
	var p PlatformUserPermission
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		u, err := platformUserByRef(c, tx)
		if err != nil {
			return auditRecord{}, err
		}
		permID, found, err := lookupID(c.ctx(), tx, "admin.platform_permissions", "code", req.Code)
		if err != nil {
			return auditRecord{}, err
		}
		if !found {
			return auditRecord{}, errValidation("code", "not in the platform catalog: "+req.Code)
		}
		tenant, err := tenantRef(c, tx, "tenant_id", req.TenantID)
		if err != nil {
			return auditRecord{}, err
		}
		// No escalation: a grant confers its code; a deny confers nothing.
		if *req.Granted {
			if err := s.guardConferral(c, tx, tenant, []string{req.Code}); err != nil {
				return auditRecord{}, err
			}
		}
		var id string
		err = tx.QueryRow(c.ctx(), `INSERT INTO admin.platform_user_permissions (user_id, permission_id, tenant_id, is_granted, expires_at, granted_by)
			VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6) RETURNING id::text`, u.ID, permID, tenant, *req.Granted, req.ExpiresAt, c.actor()).Scan(&id)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("platform user " + u.ExternalID + " already has a direct grant or deny of " + req.Code + " with this restriction: delete it first")
		}
		if err != nil {
			return auditRecord{}, err
		}
		p, err = scanPlatformUserPermission(tx.QueryRow(c.ctx(), platformUserPermissionQuery+` WHERE up.id = $1::uuid`, id))
		rec := auditRecord{Action: "platform_user_permission.add", TargetType: "platform_user", TargetID: u.ID, After: p}
		if tenant != nil {
			rec.TenantID = *tenant
		}
		return rec, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, p, map[string]any{"version": v})
}

func (s *Server) listPlatformUserPermissions(c *call) error {
	u, err := platformUserByRef(c, s.Admin)
	if err != nil {
		return err
	}
	rows, err := s.Admin.Query(c.ctx(), platformUserPermissionQuery+` WHERE up.user_id = $1::uuid ORDER BY p.code COLLATE "C", up.tenant_id NULLS FIRST`, u.ID)
	list, err := collect(rows, err, scanPlatformUserPermission)
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

func (s *Server) deletePlatformUserPermission(c *call) error {
	var p PlatformUserPermission
	v, err := s.adminWrite(c, func(tx pgx.Tx) (auditRecord, error) {
		u, err := platformUserByRef(c, tx)
		if err != nil {
			return auditRecord{}, err
		}
		id := c.r.PathValue("id")
		p, err = scanPlatformUserPermission(tx.QueryRow(c.ctx(), platformUserPermissionQuery+` WHERE up.id::text = $1 AND up.user_id = $2::uuid`, id, u.ID))
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("platform user " + u.ExternalID + " has no direct permission " + id)
		}
		if err != nil {
			return auditRecord{}, err
		}
		if err := s.guardRemoval(c, tx, c.platformLevel(), u.ID, u.ExternalID, p.Code, p.Granted, p.TenantID); err != nil {
			return auditRecord{}, err
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM admin.platform_user_permissions WHERE id = $1::uuid`, p.ID)
		rec := auditRecord{Action: "platform_user_permission.delete", TargetType: "platform_user", TargetID: u.ID, Before: p}
		if p.TenantID != nil {
			rec.TenantID = *p.TenantID
		}
		return rec, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, p, map[string]any{"version": v})
}

// rbacSchemas are the RBAC endpoints' schemas.
func rbacSchemas() map[string]schema {
	ts := strf("date-time")
	uuid := strf("uuid")
	status := enum("active", "inactive", "suspended")
	nullableStr := schema{"type": []string{"string", "null"}}
	return map[string]schema{
		// Tenant RBAC.
		"TenantUser":       obj(schema{"id": uuid, "external_id": str(), "email": str(), "display_name": str(), "status": status, "created_at": ts}, "id", "external_id"),
		"CreateTenantUser": obj(schema{"external_id": str(), "email": str(), "display_name": str()}, "external_id"),
		"PatchTenantUser":  obj(schema{"status": status, "email": nullableStr, "display_name": nullableStr}),
		"Permission":       obj(schema{"id": uuid, "code": str(), "description": str(), "is_wildcard": boolean()}, "code"),
		"Role": obj(schema{"id": uuid, "code": str(), "name": str(), "description": str(), "level": str(), "is_system": boolean(),
			"is_active": boolean(), "inherits": arr(str()), "permissions": arr(str())}, "id", "code"),
		"CreateRole": obj(schema{"code": pat(tenantRoleCodeRe, "billing_admin"), "name": str(), "level": enum("owner", "admin", "manager", "member", "viewer", "guest"),
			"inherits": arr(str()), "permissions": arr(str())}, "code"),
		"PatchRole": obj(schema{"name": str(), "description": nullableStr, "is_active": boolean(),
			"inherits": arr(str()), "permissions": arr(str())}),
		"AssignRole": obj(schema{"role": schema{"type": "string", "description": "the role's id or code"},
			"team_id": schema{"type": "string", "description": "the team's id or slug"}, "expires_at": ts}, "role"),
		"RoleAssignment": obj(schema{"id": uuid, "user_id": uuid, "role_id": uuid, "role": str(), "team_id": uuid, "expires_at": ts}),
		"UserRoleAssignment": obj(schema{"id": uuid, "user_id": uuid, "role_id": uuid, "role": str(), "team_id": uuid, "expires_at": ts,
			"granted_by": str(), "created_at": ts}, "id", "role"),
		"AddUserPermission": obj(schema{"code": pat(tenantPermissionRe, "invoices.read.team"), "granted": boolean(),
			"team_id": schema{"type": "string", "description": "the team's id or slug"}, "expires_at": ts}, "code", "granted"),
		"UserPermission": obj(schema{"id": uuid, "user_id": uuid, "permission_id": uuid, "code": str(), "granted": boolean(),
			"team_id": uuid, "expires_at": ts, "granted_by": str(), "created_at": ts}, "id", "code", "granted"),
		"Team":          obj(schema{"id": uuid, "slug": str(), "name": str(), "parent_team_id": uuid, "created_at": ts, "updated_at": ts}, "id", "slug", "name"),
		"CreateTeam":    obj(schema{"slug": pat(slugPattern, "backend"), "name": str(), "parent_team_id": schema{"type": "string", "description": "the parent team's id or slug"}}, "slug"),
		"PatchTeam":     obj(schema{"name": str(), "parent_team_id": nullableStr}),
		"TeamMember":    obj(schema{"team_id": uuid, "user_id": uuid, "external_id": str(), "created_at": ts}, "team_id", "user_id"),
		"AddTeamMember": obj(schema{"user_id": str()}, "user_id"),
		"EffectivePermission": obj(schema{"permission": str(), "allowed": boolean(), "reason": str(), "grant_code": str(), "direct": boolean(),
			"role": str(), "team_id": str()}, "permission", "allowed", "reason"),

		// Platform RBAC.
		"PlatformUser":       obj(schema{"id": uuid, "external_id": str(), "email": str(), "status": status, "created_at": ts, "updated_at": ts}, "id", "external_id", "status"),
		"CreatePlatformUser": obj(schema{"external_id": str(), "email": str()}, "external_id"),
		"PatchPlatformUser":  obj(schema{"status": status, "email": nullableStr}),
		"PlatformRole": obj(schema{"id": uuid, "code": str(), "name": str(), "description": str(), "is_system": boolean(),
			"is_active": boolean(), "inherits": arr(str()), "permissions": arr(str())}, "id", "code"),
		"CreatePlatformRole":       obj(schema{"code": pat(platformRoleCodeRe, "billing-support"), "name": str(), "description": str(), "inherits": arr(str()), "permissions": arr(str())}, "code"),
		"CreatePermission":         obj(schema{"code": pat(tenantPermissionRe, "invoices.read.tenant"), "description": str()}, "code"),
		"CreatePlatformPermission": obj(schema{"code": pat(platformPermissionRe, "invoices.read.platform"), "description": str()}, "code"),
		"AssignPlatformRole": obj(schema{"role": schema{"type": "string", "description": "the role's id or code"},
			"tenant_id": schema{"type": "string", "description": "the tenant's id or slug"}, "expires_at": ts}, "role"),
		"PlatformRoleAssignment": obj(schema{"id": uuid, "user_id": uuid, "role_id": uuid, "role": str(), "tenant_id": uuid,
			"expires_at": ts, "granted_by": str(), "created_at": ts}, "id", "role"),
		"AddPlatformUserPermission": obj(schema{"code": pat(platformPermissionRe, "tenants.read.tenant"), "granted": boolean(),
			"tenant_id": schema{"type": "string", "description": "the tenant's id or slug"}, "expires_at": ts}, "code", "granted"),
		"PlatformUserPermission": obj(schema{"id": uuid, "user_id": uuid, "permission_id": uuid, "code": str(), "granted": boolean(),
			"tenant_id": uuid, "expires_at": ts, "granted_by": str(), "created_at": ts}, "id", "code", "granted"),
	}
}
