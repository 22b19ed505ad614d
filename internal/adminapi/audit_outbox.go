package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/neofast/neoauthz/internal/pgstore"
)

// The audit of tenant RBAC writes goes through a transactional outbox: the tenant's database
// and the admin database share no transaction, so a write inserts its audit record into its
// schema's audit_outbox in the same transaction as the change (insertOutbox), and shipOutbox
// then appends the outbox rows to admin.audit_log and deletes them. The append and the delete
// are in two databases, so a row may be shipped twice (a crash or a concurrent shipper in
// between); admin.audit_log.outbox_id is unique and appendAudit skips a row already recorded,
// so it is recorded once.

// DefaultOutboxInterval is the background shipper's period in `admin serve`.
const DefaultOutboxInterval = 5 * time.Second

// outboxBatch bounds the rows one shipOutbox call moves; the rest wait for the next call.
const outboxBatch = 500

// outboxActions are the only actions a tenant's outbox may carry (tenant RBAC writes), with
// their target types: the outbox is writable by anyone who can write to the tenant's schema,
// so it must not be able to claim anything else.
var outboxActions = map[string]string{
	"tenant_user.create": "tenant_user", "tenant_user.update": "tenant_user", "tenant_user.delete": "tenant_user",
	"tenant_user_role.assign": "tenant_user", "tenant_user_role.revoke": "tenant_user",
	"tenant_user_permission.add": "tenant_user", "tenant_user_permission.delete": "tenant_user",
	"tenant_role.create": "tenant_role", "tenant_role.update": "tenant_role", "tenant_role.delete": "tenant_role",
	"tenant_team.create": "tenant_team", "tenant_team.update": "tenant_team", "tenant_team.delete": "tenant_team",
	"tenant_team_member.add": "tenant_team", "tenant_team_member.remove": "tenant_team",
	"tenant_permission.create": "tenant_permission", "tenant_permission.delete": "tenant_permission",
	// Written by the schema's sync_user function (just-in-time user sync in the pdp).
	"tenant_user.sync_create": "tenant_user", "tenant_user.sync_update": "tenant_user",
}

// outboxClockSkew is how far a claimed time may lie outside [tenant created, shipped] before
// it is marked implausible.
const outboxClockSkew = time.Minute

// vetOutboxRow turns an outbox row of tenant t into the record to chain: always with its
// outbox id, the tenant, the source schema and (set by the append) the shipping time. A row
// claiming anything but a tenant RBAC action is recorded as audit_outbox.rejected with what it
// claimed, never as that action; a claimed time before the tenant existed or after now is kept
// but marked implausible.
func vetOutboxRow(o outboxRow, t pgstore.Tenant, tenantCreated, now time.Time) auditRecord {
	rec := o.rec
	rec.TenantID, rec.OutboxID, rec.OccurredAt, rec.SourceSchema = t.ID, o.id, o.occurredAt, t.SchemaName
	rec.OccurredAtImplausible = o.occurredAt.Before(tenantCreated.Add(-outboxClockSkew)) || o.occurredAt.After(now.Add(outboxClockSkew))
	if want, ok := outboxActions[rec.Action]; ok && want == rec.TargetType {
		return rec
	}
	return auditRecord{Actor: "system:audit-outbox", Action: "audit_outbox.rejected", TargetType: "tenant", TargetID: t.ID,
		TenantID: t.ID, OutboxID: o.id, SourceSchema: t.SchemaName, OccurredAtImplausible: rec.OccurredAtImplausible,
		After: map[string]any{"reason": "not a tenant RBAC action", "claimed": map[string]any{
			"occurred_at": o.occurredAt, "actor": rec.Actor, "action": rec.Action, "target_type": rec.TargetType,
			"target_id": rec.TargetID, "request_id": rec.RequestID, "before": rec.Before, "after": rec.After}}}
}

// insertOutbox inserts rec into db's audit_outbox inside the tenant write's transaction.
func insertOutbox(ctx context.Context, tx pgx.Tx, db tenantDB, rec auditRecord) error {
	before, after, err := rec.Payload()
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+db.table("audit_outbox")+`
		(actor, action, target_type, target_id, before, after, request_id)
		VALUES ($1, $2, $3, nullif($4, ''), $5::jsonb, $6::jsonb, nullif($7, ''))`,
		rec.Actor, rec.Action, rec.TargetType, rec.TargetID, before, after, rec.RequestID)
	if err != nil {
		return fmt.Errorf("audit outbox insert: %w", err)
	}
	return nil
}

// outboxRow is one audit_outbox row as read by the shipper; before/after stay jsonb text.
type outboxRow struct {
	id         string
	occurredAt time.Time
	rec        auditRecord
}

// shipOutbox appends t's audit_outbox rows (oldest first) to admin.audit_log, each with its
// outbox id, and deletes them from the outbox. It returns how many rows it removed from the
// outbox, whether appended now or found already recorded. A schema without an outbox (not
// yet migrated) has nothing to ship.
func (s *Server) shipOutbox(ctx context.Context, t pgstore.Tenant) (int, error) {
	db, err := s.tenantDBOf(ctx, t)
	if err != nil {
		return 0, err
	}
	rows, err := db.pool.Query(ctx, `SELECT id::text, occurred_at, actor, action, target_type, coalesce(target_id, ''),
		before::text, after::text, coalesce(request_id, '')
		FROM `+db.table("audit_outbox")+` ORDER BY occurred_at, id LIMIT $1`, outboxBatch)
	if err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return 0, nil
		}
		return 0, fmt.Errorf("audit outbox read: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
		var o outboxRow
		var before, after *string
		err := row.Scan(&o.id, &o.occurredAt, &o.rec.Actor, &o.rec.Action, &o.rec.TargetType, &o.rec.TargetID,
			&before, &after, &o.rec.RequestID)
		// jsonb text is valid JSON: appendAudit re-reads it through ::jsonb unchanged.
		if before != nil {
			o.rec.Before = json.RawMessage(*before)
		}
		if after != nil {
			o.rec.After = json.RawMessage(*after)
		}
		return o, err
	})
	if err != nil {
		return 0, fmt.Errorf("audit outbox read: %w", err)
	}
	var created time.Time
	if err := s.Admin.QueryRow(ctx, `SELECT created_at FROM admin.tenants WHERE id = $1`, t.ID).Scan(&created); err != nil {
		return 0, fmt.Errorf("audit outbox: tenant: %w", err)
	}
	var shipped []string
	var shipErr error
	for _, o := range list {
		rec := vetOutboxRow(o, t, created, s.Now())
		err := pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error {
			_, err := appendAudit(ctx, tx, rec)
			return err
		})
		if err != nil && !errors.Is(err, errAuditShipped) {
			// Stop here so the rows after it keep their order in the chain.
			shipErr = fmt.Errorf("audit outbox row %s: %w", o.id, err)
			break
		}
		shipped = append(shipped, o.id)
	}
	if len(shipped) > 0 {
		if _, err := db.pool.Exec(ctx, `DELETE FROM `+db.table("audit_outbox")+` WHERE id = ANY($1::uuid[])`, shipped); err != nil {
			return 0, errors.Join(shipErr, fmt.Errorf("audit outbox delete: %w", err))
		}
	}
	return len(shipped), shipErr
}

// ShipAuditOutboxes runs shipOutbox once over every tenant the API can write to (active or
// suspended, placed on an active database connection) and returns how many outbox rows it
// shipped. Failures are logged, tenant by tenant.
func (s *Server) ShipAuditOutboxes(ctx context.Context) int {
	tenants, err := s.outboxTenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Error("audit outbox: list tenants", "err", err)
		}
		return 0
	}
	total := 0
	for _, t := range tenants {
		n, err := s.shipOutbox(ctx, t)
		total += n
		if err != nil && ctx.Err() == nil {
			s.Log.Error("audit outbox: ship", "tenant", t.Slug, "err", err)
		}
	}
	return total
}

// outboxTenants lists the tenants the API can write to (active or suspended, placed on an
// active database connection): those whose outbox is shipped.
func (s *Server) outboxTenants(ctx context.Context) ([]pgstore.Tenant, error) {
	rows, err := s.Admin.Query(ctx, `SELECT t.id::text, t.slug, t.status, t.schema_name,
		t.database_connection_id::text, coalesce(t.database_name, '')
		FROM admin.tenants t JOIN admin.database_connections c ON c.id = t.database_connection_id
		WHERE t.status IN ('active', 'suspended') AND c.is_active ORDER BY t.slug`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (pgstore.Tenant, error) {
		var t pgstore.Tenant
		err := row.Scan(&t.ID, &t.Slug, &t.Status, &t.SchemaName, &t.ConnectionID, &t.Database)
		return t, err
	})
}

// MonitorAuditOutbox ships every tenant's audit outbox each interval until ctx ends, so rows
// left by a crash between a tenant commit and its ship reach admin.audit_log.
func (s *Server) MonitorAuditOutbox(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n := s.ShipAuditOutboxes(ctx); n > 0 {
			s.Log.Info("audit outbox: shipped rows left behind", "rows", n)
		}
		s.measureOutboxes(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
