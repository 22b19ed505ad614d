-- The admin database's schema (admin): regions, the database registry, organizations, tenants,
-- platform RBAC, the audit log and migration bookkeeping.

CREATE TABLE authz_state (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    tenant_id  uuid        CHECK (tenant_id IS NULL),
    version    bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    xact       xid8,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO authz_state (id) VALUES (true);

CREATE TABLE regions (
    code           text        PRIMARY KEY CHECK (platform.valid_slug(code)),
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    is_active      boolean     NOT NULL DEFAULT true,
    data_residency boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE database_connections (
    id                       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     text        NOT NULL UNIQUE CHECK (platform.valid_slug(name)),
    type                     text        NOT NULL CHECK (type IN ('primary', 'replica', 'analytics', 'backup')),
    region_code              text        NOT NULL REFERENCES regions (code) ON DELETE RESTRICT,
    host                     text        NOT NULL CHECK (host ~ '^[A-Za-z0-9._:-]{1,253}$'),
    port                     integer     NOT NULL DEFAULT 5432 CHECK (port BETWEEN 1 AND 65535),
    database                 text        NOT NULL CHECK (platform.valid_identifier(database)),
    username                 text        NOT NULL CHECK (username ~ '^[A-Za-z0-9_.@-]{1,63}$'),
    -- AES-256-GCM (nonce || ciphertext) under NEOAUTHZ_SECRET_KEY; NULL when no password.
    password_encrypted       bytea,
    tls_mode                 text        NOT NULL DEFAULT 'prefer'
                                         CHECK (tls_mode IN ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')),
    pool_min                 integer     NOT NULL DEFAULT 0 CHECK (pool_min >= 0),
    pool_max                 integer     NOT NULL DEFAULT 10 CHECK (pool_max >= 1 AND pool_max >= pool_min),
    is_active                boolean     NOT NULL DEFAULT true,
    is_healthy               boolean     NOT NULL DEFAULT false,
    last_health_check        timestamptz,
    last_latency_ms          double precision,
    last_error               text,
    consecutive_failures     integer     NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    max_consecutive_failures integer     NOT NULL DEFAULT 3 CHECK (max_consecutive_failures >= 1),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (host, port, database)
);
CREATE INDEX database_connections_region_idx ON database_connections (region_code, type) WHERE is_active;

CREATE TABLE organizations (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text        NOT NULL UNIQUE CHECK (platform.valid_slug(slug)),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id        uuid        REFERENCES organizations (id) ON DELETE RESTRICT,
    slug                   text        NOT NULL UNIQUE CHECK (platform.valid_slug(slug)),
    name                   text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                 text        NOT NULL DEFAULT 'provisioning'
                                       CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    deployment_type        text        NOT NULL CHECK (deployment_type IN ('schema', 'database')),
    region_code            text        NOT NULL REFERENCES regions (code) ON DELETE RESTRICT,
    database_connection_id uuid        REFERENCES database_connections (id) ON DELETE RESTRICT,
    -- For deployment 'database', the tenant's own database on the connection's server.
    database_name          text        CHECK (database_name IS NULL OR platform.valid_identifier(database_name)),
    schema_name            text        NOT NULL CHECK (platform.valid_identifier(schema_name)),
    -- The Keycloak realm: any valid name, stored, never derived from the slug.
    external_auth_realm    text        NOT NULL UNIQUE CHECK (platform.valid_realm(external_auth_realm)),
    settings               jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    provisioning_error     text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    CHECK ((deployment_type = 'database') = (database_name IS NOT NULL))
);
CREATE UNIQUE INDEX tenants_placement_idx ON tenants (database_connection_id, coalesce(database_name, ''), schema_name)
    WHERE status <> 'deleted';
CREATE INDEX tenants_status_idx ON tenants (status, region_code);

-- Platform RBAC: the same model as a tenant's, with tenants as the groups.
CREATE TABLE platform_users (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id text        NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 255),
    email       text        CHECK (email IS NULL OR length(email) <= 320),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform_roles (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text        NOT NULL UNIQUE CHECK (platform.valid_code(code)),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text,
    is_system   boolean     NOT NULL DEFAULT false,
    is_active   boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform_permissions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text        NOT NULL UNIQUE CHECK (platform.valid_permission_code(code, 'platform')),
    description text,
    is_wildcard boolean     GENERATED ALWAYS AS (code LIKE '%*%') STORED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform_role_permissions (
    role_id       uuid NOT NULL REFERENCES platform_roles (id) ON DELETE CASCADE,
    permission_id uuid NOT NULL REFERENCES platform_permissions (id) ON DELETE RESTRICT,
    PRIMARY KEY (role_id, permission_id)
);
CREATE INDEX platform_role_permissions_permission_idx ON platform_role_permissions (permission_id);

CREATE TABLE platform_role_inherits (
    role_id           uuid NOT NULL REFERENCES platform_roles (id) ON DELETE CASCADE,
    inherited_role_id uuid NOT NULL REFERENCES platform_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, inherited_role_id),
    CHECK (role_id <> inherited_role_id)
);
CREATE INDEX platform_role_inherits_inherited_idx ON platform_role_inherits (inherited_role_id);

CREATE TABLE platform_user_roles (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES platform_users (id) ON DELETE CASCADE,
    role_id    uuid        NOT NULL REFERENCES platform_roles (id) ON DELETE RESTRICT,
    tenant_id  uuid        REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at timestamptz,
    granted_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (user_id, role_id, tenant_id)
);
CREATE INDEX platform_user_roles_role_idx ON platform_user_roles (role_id);

CREATE TABLE platform_user_permissions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES platform_users (id) ON DELETE CASCADE,
    permission_id uuid        NOT NULL REFERENCES platform_permissions (id) ON DELETE RESTRICT,
    tenant_id     uuid        REFERENCES tenants (id) ON DELETE CASCADE,
    is_granted    boolean     NOT NULL DEFAULT true,
    expires_at    timestamptz,
    granted_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (user_id, permission_id, tenant_id)
);
CREATE INDEX platform_user_permissions_permission_idx ON platform_user_permissions (permission_id);

-- Append-only and hash-chained: hash = sha256(prev_hash || canonical row), computed by the
-- writer; `admin audit verify` walks the chain.
CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target_type text        NOT NULL,
    target_id   text,
    tenant_id   uuid,
    before      jsonb,
    after       jsonb,
    request_id  text,
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL UNIQUE
);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE migration_runs (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    scope        text        NOT NULL CHECK (scope IN ('all', 'admin', 'regional', 'tenants', 'analytics')),
    tenant_slug  text,
    action       text        NOT NULL DEFAULT 'apply' CHECK (action IN ('apply', 'rollback', 'repair')),
    target_version text,
    dry_run      boolean     NOT NULL DEFAULT false,
    status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    requested_by text        NOT NULL,
    total        integer     NOT NULL DEFAULT 0,
    succeeded    integer     NOT NULL DEFAULT 0,
    failed       integer     NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE TABLE migration_results (
    run_id                 uuid        NOT NULL REFERENCES migration_runs (id) ON DELETE CASCADE,
    target                 text        NOT NULL,
    set_name               text        NOT NULL,
    database_connection_id uuid,
    tenant_id              uuid,
    schema_name            text        NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    from_version           text,
    to_version             text,
    applied                integer     NOT NULL DEFAULT 0,
    error                  text,
    duration_ms            double precision NOT NULL DEFAULT 0,
    finished_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, target, set_name)
);
CREATE INDEX migration_results_tenant_idx ON migration_results (tenant_id, finished_at DESC);

CREATE TRIGGER platform_users_changed AFTER INSERT OR UPDATE OR DELETE ON platform_users
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'user', 'platform_users');
CREATE TRIGGER platform_user_roles_changed AFTER INSERT OR UPDATE OR DELETE ON platform_user_roles
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'user', 'platform_users');
CREATE TRIGGER platform_user_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON platform_user_permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'user', 'platform_users');
CREATE TRIGGER platform_roles_changed AFTER INSERT OR UPDATE OR DELETE ON platform_roles
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'role', '');
CREATE TRIGGER platform_role_inherits_changed AFTER INSERT OR UPDATE OR DELETE ON platform_role_inherits
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'role', '');
CREATE TRIGGER platform_role_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON platform_role_permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'role', '');
CREATE TRIGGER platform_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON platform_permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('platform', 'permission', '');
-- A tenant's status, realm or placement reaches identity and decisions in every pdp.
CREATE TRIGGER tenants_inserted_or_deleted AFTER INSERT OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'tenant', '');
CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
       OR OLD.external_auth_realm IS DISTINCT FROM NEW.external_auth_realm
       OR OLD.schema_name IS DISTINCT FROM NEW.schema_name
       OR OLD.database_name IS DISTINCT FROM NEW.database_name
       OR OLD.database_connection_id IS DISTINCT FROM NEW.database_connection_id)
    EXECUTE FUNCTION platform.rbac_changed('tenant', 'tenant', '');
