package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Helpers shared by tenant and platform RBAC: the two levels have the same model (roles,
// inheritance, a permission catalog, assignments and direct grants restricted to a group), so
// the role logic is written once against the table names of either level.

// optional is a PATCH field that tells "absent" (leave as is) from null (clear) from a value:
// encoding/json calls UnmarshalJSON only for keys present in the body, null included.
type optional[T any] struct {
	Set   bool
	Value *T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	o.Value = &v
	return nil
}

// roleTables names one level's role tables, already quoted and qualified.
type roleTables struct {
	roles, inherits, rolePermissions, permissions string
	userRoles, userPermissions                    string // assignments and direct grants/denies
	group                                         string // their restriction column: team_id or tenant_id
	catalog                                       string // for messages: "the tenant's catalog"
}

func (t tenantDB) roleTables() roleTables {
	return roleTables{roles: t.table("roles"), inherits: t.table("role_inherits"),
		rolePermissions: t.table("role_permissions"), permissions: t.table("permissions"),
		userRoles: t.table("user_roles"), userPermissions: t.table("user_permissions"), group: "team_id",
		catalog: "the tenant's catalog"}
}

var platformRoleTables = roleTables{roles: "admin.platform_roles", inherits: "admin.platform_role_inherits",
	rolePermissions: "admin.platform_role_permissions", permissions: "admin.platform_permissions",
	userRoles: "admin.platform_user_roles", userPermissions: "admin.platform_user_permissions", group: "tenant_id",
	catalog: "the platform catalog"}

// missingCodes returns the codes that are not in the catalog, so one 422 names all of them.
func missingCodes(ctx context.Context, q querier, rt roleTables, codes []string) ([]string, error) {
	var missing []string
	err := q.QueryRow(ctx, `SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM unnest($1::text[]) c
		WHERE NOT EXISTS (SELECT 1 FROM `+rt.permissions+` p WHERE p.code = c)`, codes).Scan(&missing)
	return missing, err
}

// addRolePermissions links catalog codes; a code outside the catalog is a 422 naming it.
func addRolePermissions(ctx context.Context, tx pgx.Tx, rt roleTables, roleID string, codes []string) error {
	if len(codes) == 0 {
		return nil
	}
	missing, err := missingCodes(ctx, tx, rt, codes)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return errValidation("permissions", "not in "+rt.catalog+": "+strings.Join(missing, ", "))
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+rt.rolePermissions+` (role_id, permission_id)
		SELECT $1::uuid, id FROM `+rt.permissions+` WHERE code = ANY ($2) ON CONFLICT DO NOTHING`, roleID, codes)
	return err
}

// addRoleInherits links inherited roles by code, refusing (409) a link that would close a
// cycle: the recursive CTE walks what each new parent already inherits, and a walk that reaches
// the role itself means the role would inherit itself. The engine tolerates cycles (each walk
// visits a role once), but a cycle is always an administrator's mistake, so it is refused here.
func addRoleInherits(ctx context.Context, tx pgx.Tx, rt roleTables, roleID string, codes []string) error {
	for _, code := range codes {
		var parent string
		err := tx.QueryRow(ctx, `SELECT id::text FROM `+rt.roles+` WHERE code = $1`, code).Scan(&parent)
		if errors.Is(err, pgx.ErrNoRows) {
			return errValidation("inherits", "no role "+code)
		}
		if err != nil {
			return err
		}
		var cycle bool
		err = tx.QueryRow(ctx, `WITH RECURSIVE down(id) AS (
				SELECT $1::uuid
				UNION
				SELECT ri.inherited_role_id FROM `+rt.inherits+` ri JOIN down ON ri.role_id = down.id
			) SELECT EXISTS (SELECT 1 FROM down WHERE id = $2::uuid)`, parent, roleID).Scan(&cycle)
		if err != nil {
			return err
		}
		if cycle {
			return errConflict("role inheritance cycle: " + code + " already inherits this role (or is it)")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+rt.inherits+` (role_id, inherited_role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, roleID, parent); err != nil {
			return err
		}
	}
	return nil
}

// replaceRoleLinks replaces a role's inherits and/or permissions (nil leaves one as is). The
// old links are removed first so the cycle check sees only the new set.
func replaceRoleLinks(ctx context.Context, tx pgx.Tx, rt roleTables, roleID string, inherits, permissions *[]string) error {
	if permissions != nil {
		if _, err := tx.Exec(ctx, `DELETE FROM `+rt.rolePermissions+` WHERE role_id = $1::uuid`, roleID); err != nil {
			return err
		}
		if err := addRolePermissions(ctx, tx, rt, roleID, *permissions); err != nil {
			return err
		}
	}
	if inherits != nil {
		if _, err := tx.Exec(ctx, `DELETE FROM `+rt.inherits+` WHERE role_id = $1::uuid`, roleID); err != nil {
			return err
		}
		if err := addRoleInherits(ctx, tx, rt, roleID, *inherits); err != nil {
			return err
		}
	}
	return nil
}

// lookupID resolves a reference that may be a row's id or its natural key (slug, code,
// external id) to the id; found is false when no row matches. Comparing id::text keeps a
// malformed id a miss instead of a uuid cast error.
func lookupID(ctx context.Context, q querier, table, keyColumn, ref string) (id string, found bool, err error) {
	err = q.QueryRow(ctx, `SELECT id::text FROM `+table+` WHERE id::text = $1 OR `+keyColumn+` = $1`, ref).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}

// pgCode returns the SQLSTATE of a PostgreSQL error, "" for anything else.
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// collect reads every row with scan and never returns a nil slice, so an empty list is [] in
// JSON rather than null.
func collect[T any](rows pgx.Rows, err error, scan func(pgx.Row) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return scan(row) })
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []T{}
	}
	return list, nil
}
