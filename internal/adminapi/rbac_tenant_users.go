package adminapi

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// PatchTenantUser is the body of PATCH /users/{user}; email or display_name null clears it.
type PatchTenantUser struct {
	Status      optional[string] `json:"status"`
	Email       optional[string] `json:"email"`
	DisplayName optional[string] `json:"display_name"`
}

// UserRoleAssignment is an assignment as listed under a user.
type UserRoleAssignment struct {
	RoleAssignment
	GrantedBy *string   `json:"granted_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// AddUserPermission is the body of POST /users/{user}/permissions. granted is required so
// that a deny is always written on purpose: false makes the row an explicit deny.
type AddUserPermission struct {
	Code      string     `json:"code"`
	Granted   *bool      `json:"granted"`
	TeamID    string     `json:"team_id"` // optional: team id or slug the grant or deny is restricted to
	ExpiresAt *time.Time `json:"expires_at"`
}

// UserPermission is a direct grant or deny of a user.
type UserPermission struct {
	ID           string     `json:"id"`
	UserID       string     `json:"user_id"`
	PermissionID string     `json:"permission_id"`
	Code         string     `json:"code"`
	Granted      bool       `json:"granted"`
	TeamID       *string    `json:"team_id,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	GrantedBy    *string    `json:"granted_by,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

var userStatuses = map[string]bool{"active": true, "inactive": true, "suspended": true}

const tenantUserColumns = `id::text, external_id, email, display_name, status, created_at`

func scanTenantUser(row pgx.Row) (TenantUser, error) {
	var u TenantUser
	err := row.Scan(&u.ID, &u.ExternalID, &u.Email, &u.DisplayName, &u.Status, &u.CreatedAt)
	return u, err
}

// tenantUserByRef loads the user named by the {user} path parameter (id or external id).
func tenantUserByRef(c *call, q querier, db tenantDB) (TenantUser, error) {
	ref := c.r.PathValue("user")
	u, err := scanTenantUser(q.QueryRow(c.ctx(), `SELECT `+tenantUserColumns+` FROM `+db.table("users")+` WHERE id::text = $1 OR external_id = $1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return TenantUser{}, errNotFound("user " + ref + " does not exist")
	}
	return u, err
}

func (s *Server) getTenantUser(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	u, err := tenantUserByRef(c, db.pool, db)
	if err != nil {
		return err
	}
	return c.ok(200, u, nil)
}

func (s *Server) patchTenantUser(c *call) error {
	var req PatchTenantUser
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
	if req.DisplayName.Value != nil && len(*req.DisplayName.Value) > 200 {
		fe.add("display_name", "at most 200 characters")
	}
	if err := fe.err(); err != nil {
		return err
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var before, after TenantUser
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if before, err = tenantUserByRef(c, tx, db); err != nil {
			return auditRecord{}, err
		}
		status, email, display := before.Status, before.Email, before.DisplayName
		if req.Status.Set {
			status = *req.Status.Value
			if err := s.guardStatusChange(c, tx, lv, before.ID, before.Status, status); err != nil {
				return auditRecord{}, err
			}
		}
		if req.Email.Set {
			email = req.Email.Value
		}
		if req.DisplayName.Set {
			display = req.DisplayName.Value
		}
		after, err = scanTenantUser(tx.QueryRow(c.ctx(), `UPDATE `+db.table("users")+` SET status = $2, email = $3, display_name = $4, updated_at = now()
			WHERE id = $1::uuid RETURNING `+tenantUserColumns, before.ID, status, email, display))
		return auditRecord{Action: "tenant_user.update", TargetType: "tenant_user", TargetID: before.ID, Before: before, After: after}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deleteTenantUser(c *call) error {
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var u TenantUser
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if u, err = tenantUserByRef(c, tx, db); err != nil {
			return auditRecord{}, err
		}
		if err := s.guardActOn(c, tx, lv, u.ID, msgCannotActOn); err != nil {
			return auditRecord{}, err
		}
		// Memberships, assignments and direct permissions go with the user (ON DELETE CASCADE).
		_, err = tx.Exec(c.ctx(), `DELETE FROM `+db.table("users")+` WHERE id = $1::uuid`, u.ID)
		return auditRecord{Action: "tenant_user.delete", TargetType: "tenant_user", TargetID: u.ID, Before: u}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, u, map[string]any{"version": v})
}

func userRoleQuery(db tenantDB) string {
	return `SELECT ur.id::text, ur.user_id::text, ur.role_id::text, r.code, ur.team_id::text, ur.expires_at, ur.granted_by, ur.created_at
		FROM ` + db.table("user_roles") + ` ur JOIN ` + db.table("roles") + ` r ON r.id = ur.role_id`
}

func scanUserRole(row pgx.Row) (UserRoleAssignment, error) {
	var a UserRoleAssignment
	err := row.Scan(&a.ID, &a.UserID, &a.RoleID, &a.Role, &a.TeamID, &a.ExpiresAt, &a.GrantedBy, &a.CreatedAt)
	return a, err
}

// userRoleRows are a tenant user's role assignments.
var userRoleRows = userRows[UserRoleAssignment]{
	query: userRoleQuery, alias: "ur", table: "user_roles", param: "assignment",
	order: `r.code COLLATE "C", ur.team_id NULLS FIRST`, noun: "role assignment",
	action: "tenant_user_role.revoke", scan: scanUserRole, id: func(a UserRoleAssignment) string { return a.ID },
	guard: func(s *Server, c *call, tx pgx.Tx, lv level, u TenantUser, _ UserRoleAssignment) error {
		return s.guardActOn(c, tx, lv, u.ID, msgCannotActOn)
	},
}

func (s *Server) listTenantUserRoles(c *call) error { return listUserRows(s, c, userRoleRows) }

func (s *Server) revokeTenantUserRole(c *call) error { return deleteUserRow(s, c, userRoleRows) }

func userPermissionQuery(db tenantDB) string {
	return `SELECT up.id::text, up.user_id::text, up.permission_id::text, p.code, up.is_granted, up.team_id::text, up.expires_at, up.granted_by, up.created_at
		FROM ` + db.table("user_permissions") + ` up JOIN ` + db.table("permissions") + ` p ON p.id = up.permission_id`
}

func scanUserPermission(row pgx.Row) (UserPermission, error) {
	var p UserPermission
	err := row.Scan(&p.ID, &p.UserID, &p.PermissionID, &p.Code, &p.Granted, &p.TeamID, &p.ExpiresAt, &p.GrantedBy, &p.CreatedAt)
	return p, err
}

func (s *Server) addTenantUserPermission(c *call) error {
	var req AddUserPermission
	if err := c.decode(&req); err != nil {
		return err
	}
	fe := fieldErrors{}
	if req.Code == "" {
		fe.add("code", "required: a code of the tenant's catalog")
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
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var p UserPermission
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		u, err := tenantUserByRef(c, tx, db)
		if err != nil {
			return auditRecord{}, err
		}
		var permID string
		err = tx.QueryRow(c.ctx(), `SELECT id::text FROM `+db.table("permissions")+` WHERE code = $1`, req.Code).Scan(&permID)
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errValidation("code", "not in the tenant's catalog: "+req.Code)
		}
		if err != nil {
			return auditRecord{}, err
		}
		var team *string
		if req.TeamID != "" {
			id, found, err := lookupID(c.ctx(), tx, db.table("teams"), "slug", req.TeamID)
			if err != nil {
				return auditRecord{}, err
			}
			if !found {
				return auditRecord{}, errValidation("team_id", "no team "+req.TeamID)
			}
			team = &id
		}
		if *req.Granted {
			if err := s.guard(c, tx, lv, team, []string{req.Code}, msgCannotGrant); err != nil {
				return auditRecord{}, err
			}
		}
		var id string
		err = tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("user_permissions")+` (user_id, permission_id, team_id, is_granted, expires_at, granted_by)
			VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6) RETURNING id::text`, u.ID, permID, team, *req.Granted, req.ExpiresAt, c.actor()).Scan(&id)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("user " + u.ExternalID + " already has a direct grant or deny of " + req.Code + " with this restriction: delete it first")
		}
		if err != nil {
			return auditRecord{}, err
		}
		p, err = scanUserPermission(tx.QueryRow(c.ctx(), userPermissionQuery(db)+` WHERE up.id = $1::uuid`, id))
		return auditRecord{Action: "tenant_user_permission.add", TargetType: "tenant_user", TargetID: u.ID, After: p}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, p, map[string]any{"version": v})
}

// userPermissionRows are a tenant user's direct grants and denies.
var userPermissionRows = userRows[UserPermission]{
	query: userPermissionQuery, alias: "up", table: "user_permissions", param: "id",
	order: `p.code COLLATE "C", up.team_id NULLS FIRST`, noun: "direct permission",
	action: "tenant_user_permission.delete", scan: scanUserPermission, id: func(p UserPermission) string { return p.ID },
	guard: func(s *Server, c *call, tx pgx.Tx, lv level, u TenantUser, p UserPermission) error {
		return s.guardRemoval(c, tx, lv, u.ID, u.ExternalID, p.Code, p.Granted, p.TeamID)
	},
}

func (s *Server) listTenantUserPermissions(c *call) error {
	return listUserRows(s, c, userPermissionRows)
}

func (s *Server) deleteTenantUserPermission(c *call) error {
	return deleteUserRow(s, c, userPermissionRows)
}

// userRows describes a table whose rows belong to one tenant user, so that one list handler
// and one delete handler serve role assignments and direct permissions alike.
type userRows[T any] struct {
	query  func(tenantDB) string // SELECT … FROM the table aliased as alias
	alias  string
	table  string
	param  string // path parameter naming one row
	order  string
	noun   string // what a row is, for 404s
	action string // audit action of a deletion
	scan   func(pgx.Row) (T, error)
	id     func(T) string
	// guard runs the no-escalation check of removing row from user u.
	guard func(s *Server, c *call, tx pgx.Tx, lv level, u TenantUser, row T) error
}

func listUserRows[T any](s *Server, c *call, k userRows[T]) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	u, err := tenantUserByRef(c, db.pool, db)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(c.ctx(), k.query(db)+` WHERE `+k.alias+`.user_id = $1::uuid ORDER BY `+k.order, u.ID)
	list, err := collect(rows, err, k.scan)
	if err != nil {
		return err
	}
	return c.ok(200, list, map[string]any{"total": len(list)})
}

func deleteUserRow[T any](s *Server, c *call, k userRows[T]) error {
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var row T
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		u, err := tenantUserByRef(c, tx, db)
		if err != nil {
			return auditRecord{}, err
		}
		id := c.r.PathValue(k.param)
		// The row must be this user's: a path naming another user's row is a 404, not a
		// change to someone else's permissions.
		row, err = k.scan(tx.QueryRow(c.ctx(), k.query(db)+` WHERE `+k.alias+`.id::text = $1 AND `+k.alias+`.user_id = $2::uuid`, id, u.ID))
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("user " + u.ExternalID + " has no " + k.noun + " " + id)
		}
		if err != nil {
			return auditRecord{}, err
		}
		if err := k.guard(s, c, tx, lv, u, row); err != nil {
			return auditRecord{}, err
		}
		_, err = tx.Exec(c.ctx(), `DELETE FROM `+db.table(k.table)+` WHERE id = $1::uuid`, k.id(row))
		return auditRecord{Action: k.action, TargetType: "tenant_user", TargetID: u.ID, Before: row}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, row, map[string]any{"version": v})
}
