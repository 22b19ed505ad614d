package adminapi

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/neofast/neoauthz/internal/audit"
)

// The audit log itself (the chain, its append and its verification) is package audit; these
// names keep the handlers' vocabulary.
type (
	// AuditEntry is one audit log row.
	AuditEntry = audit.Entry
	// AuditVerification is the outcome of walking the chain.
	AuditVerification = audit.Verification
	auditRecord       = audit.Record
)

var errAuditShipped = audit.ErrShipped

func scanAudit(row pgx.Row) (AuditEntry, error) { return audit.Scan(row) }

func appendAudit(ctx context.Context, tx pgx.Tx, rec auditRecord) (AuditEntry, error) {
	return audit.Append(ctx, tx, rec)
}

// appendAuditNow appends in a transaction of its own, for a change committed in another
// database that has no outbox to carry its audit row.
func appendAuditNow(ctx context.Context, pool *pgxpool.Pool, rec auditRecord) error {
	return audit.AppendNow(ctx, pool, rec)
}

// VerifyAudit walks the audit chain, against expect when given; see audit.Verify.
func VerifyAudit(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, expect *audit.Head) (AuditVerification, error) {
	return audit.Verify(ctx, q, expect)
}

func (s *Server) listAudit(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	if t := q.Get("tenant_id"); t != "" && !uuidLike(t) {
		return errValidation("tenant_id", "must be a tenant id (uuid)")
	}
	rows, err := s.Admin.Query(c.ctx(), `SELECT `+audit.Columns+`, count(*) OVER ()
		FROM admin.audit_log
		WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR target_type = $3)
		  AND ($4 = '' OR target_id = $4) AND ($5 = '' OR tenant_id = nullif($5, '')::uuid)
		ORDER BY id DESC LIMIT $6 OFFSET $7`,
		q.Get("actor"), q.Get("action"), q.Get("target_type"), q.Get("target_id"), q.Get("tenant_id"), size, (page-1)*size)
	if err != nil {
		return err
	}
	total := 0
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		return audit.Scan(row, &total)
	})
	if err != nil {
		return err
	}
	if list == nil {
		list = []AuditEntry{}
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) verifyAudit(c *call) error {
	res, err := VerifyAudit(c.ctx(), s.Admin, nil)
	if err != nil {
		return err
	}
	return c.ok(200, res, nil)
}
