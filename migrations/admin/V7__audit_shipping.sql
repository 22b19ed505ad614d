-- Rows shipped from a tenant schema's audit_outbox carry what the admin side knows for sure:
-- when they were shipped and from which schema, and whether the time the row claims is
-- implausible (before the tenant existed, or after it was shipped). Covered by the row's hash
-- when shipped_at is set, so older rows keep their hashes.
ALTER TABLE audit_log
    ADD COLUMN shipped_at timestamptz,
    ADD COLUMN source_schema text,
    ADD COLUMN occurred_at_implausible boolean NOT NULL DEFAULT false;
