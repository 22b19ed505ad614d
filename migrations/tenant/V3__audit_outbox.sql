-- Transactional outbox of the admin API's audit rows. A tenant RBAC write inserts its audit
-- record here in the same transaction as the change; the admin API then ships the rows to
-- admin.audit_log (admin database) and deletes them, so a crash between the tenant commit and
-- the admin append delays the audit row instead of losing it. Not RBAC data: no
-- rbac_changed trigger, and the version does not move when it changes.
CREATE TABLE audit_outbox (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target_type text        NOT NULL,
    target_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_outbox_order_idx ON audit_outbox (occurred_at, id);
