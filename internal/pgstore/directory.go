package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/migrate"
)

// TenantUserByEmail returns the external id of the one user of t whose email is email
// (compared case-insensitively). found is false when no user, or more than one, has it: an
// email two users share names nobody.
func (s *Store) TenantUserByEmail(ctx context.Context, t Tenant, email string) (externalID string, found bool, err error) {
	ids, err := s.tenantStrings(ctx, t, "user_by_email", func(q func(string) string) string {
		return `SELECT external_id FROM ` + q("users") + ` WHERE lower(email) = lower($1) LIMIT 2`
	}, email)
	if err != nil || len(ids) != 1 {
		return "", false, err
	}
	return ids[0], true, nil
}

// TenantSubjectCandidates returns, in byte order of external id and after after, at most
// limit active users of t holding a valid grant whose resource and action segments match
// resource and action (a stored '*' matches anything): a direct grant, or an assignment to a
// role from which a role holding such a grant is reachable through inheritance. One
// statement. It is a superset of the users the engine allows (denies, scopes, restrictions,
// inactive roles are the engine's to apply).
func (s *Store) TenantSubjectCandidates(ctx context.Context, t Tenant, resource, action, after string, limit int) ([]string, error) {
	return s.tenantStrings(ctx, t, "subject_candidates", func(q func(string) string) string {
		matches := `split_part(p.code, '.', 1) IN ($1, '*') AND split_part(p.code, '.', 2) IN ($2, '*')`
		return `WITH RECURSIVE
granting AS (
    SELECT rp.role_id AS id FROM ` + q("role_permissions") + ` rp JOIN ` + q("permissions") + ` p ON p.id = rp.permission_id
     WHERE ` + matches + `),
up (id) AS (
    SELECT id FROM granting
    UNION
    SELECT ri.role_id FROM ` + q("role_inherits") + ` ri JOIN up ON ri.inherited_role_id = up.id)
SELECT u.external_id FROM ` + q("users") + ` u
 WHERE u.status = 'active' AND u.external_id COLLATE "C" > $3
   AND (EXISTS (SELECT 1 FROM ` + q("user_roles") + ` ur
                 WHERE ur.user_id = u.id AND ur.role_id IN (SELECT id FROM up)
                   AND (ur.expires_at IS NULL OR ur.expires_at > now()))
     OR EXISTS (SELECT 1 FROM ` + q("user_permissions") + ` d JOIN ` + q("permissions") + ` p ON p.id = d.permission_id
                 WHERE d.user_id = u.id AND d.is_granted AND ` + matches + `
                   AND (d.expires_at IS NULL OR d.expires_at > now())))
 ORDER BY u.external_id COLLATE "C"
 LIMIT $4`
	}, resource, action, after, limit)
}

// TenantTeams returns at most limit team ids of t after after, in byte order.
func (s *Store) TenantTeams(ctx context.Context, t Tenant, after string, limit int) ([]string, error) {
	return s.tenantStrings(ctx, t, "teams", func(q func(string) string) string {
		return `SELECT id::text FROM ` + q("teams") + ` WHERE id::text COLLATE "C" > $1 ORDER BY id::text COLLATE "C" LIMIT $2`
	}, after, limit)
}

// tenantStrings runs one statement on t's schema, built by sql with a function that quotes
// the schema's tables, and returns its single text column. query names it in
// db_query_duration_seconds.
func (s *Store) tenantStrings(ctx context.Context, t Tenant, query string, sql func(q func(string) string) string, args ...any) ([]string, error) {
	if !migrate.ValidSchemaName(t.SchemaName) {
		return nil, fmt.Errorf("pgstore: schema %q: %w", t.SchemaName, ErrInvalidSchemaName)
	}
	pool, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.timeout(ctx, query)
	defer cancel()
	stmt := sql(func(table string) string { return pgx.Identifier{t.SchemaName, table}.Sanitize() })
	rows, err := pool.Query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s in tenant %s: %w", query, t.ID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s in tenant %s: %w", query, t.ID, err)
	}
	return out, nil
}
