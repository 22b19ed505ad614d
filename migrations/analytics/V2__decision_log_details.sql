-- What the pdp records of each decision besides the V1 columns, and the indexes the admin
-- API's queries use (a tenant's decisions by time; one decision by id).

ALTER TABLE decision_log
    ADD COLUMN level           text,     -- tenant or platform; NULL when no subject was established
    ADD COLUMN resource_owner  text,
    ADD COLUMN resource_team   text,
    ADD COLUMN resource_tenant text,
    ADD COLUMN grant_code      text,     -- the matched grant of an allow
    ADD COLUMN grant_role      text,     -- the assigned role that conferred it; NULL for a direct grant
    ADD COLUMN grant_group     text,     -- the grant's restriction (team or tenant)
    ADD COLUMN transport       text NOT NULL DEFAULT 'grpc', -- extauthz, forwardauth, grpc or authzen
    ADD COLUMN method          text,
    ADD COLUMN path            text,     -- normalised, never the query string
    ADD COLUMN client_addr     text,
    ADD COLUMN latency_us      integer;

CREATE INDEX decision_log_tenant_time ON decision_log (tenant_id, decided_at DESC);
CREATE INDEX decision_log_decision_id ON decision_log (decision_id);
