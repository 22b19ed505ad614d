-- Decision log, partitioned by day (analytics databases, schema analytics). Empty for now: the
-- pdp does not ship decisions here yet.

CREATE TABLE decision_log (
    decided_at  timestamptz NOT NULL,
    decision_id text        NOT NULL,
    tenant_id   uuid,
    user_id     text,
    permission  text        NOT NULL,
    allowed     boolean     NOT NULL,
    reason      text        NOT NULL,
    version     bigint,
    PRIMARY KEY (decided_at, decision_id)
) PARTITION BY RANGE (decided_at);

-- Rows for a day without its partition land here instead of failing the insert.
CREATE TABLE decision_log_default PARTITION OF decision_log DEFAULT;

-- ensure_decision_log_partition creates the partition of the given day when it is missing.
CREATE OR REPLACE FUNCTION ensure_decision_log_partition(day date) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    part text := 'decision_log_' || to_char(day, 'YYYYMMDD');
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %I.decision_log FOR VALUES FROM (%L) TO (%L)',
        current_schema(), part, current_schema(), day, day + 1);
END
$$;
