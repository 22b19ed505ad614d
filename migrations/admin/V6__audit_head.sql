-- The audit chain's head, kept outside the chain: every append updates it in the same
-- transaction, so rows removed from the end of audit_log (which leave no gap and no broken
-- link) still show as a chain shorter than its head. `admin audit checkpoint` prints the head
-- with a MAC for operators to keep elsewhere, against removing both.
CREATE TABLE audit_head (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_id    bigint      NOT NULL,
    last_hash  bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_head (last_id, last_hash)
SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1;
