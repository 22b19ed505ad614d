-- The tenant outbox row an audit row was shipped from (NULL for rows the admin API appended
-- directly). Unique, so a row shipped twice (the admin append and the outbox delete are in two
-- databases) is recorded once. It is covered by the row's hash only when set, so the hashes
-- of older rows (all NULL) are unchanged.
ALTER TABLE audit_log ADD COLUMN outbox_id uuid UNIQUE;
