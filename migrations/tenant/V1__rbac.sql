-- Tenant RBAC schema: applied to each tenant's schema and to tenant_template. Objects are
-- created unqualified; the migration engine sets search_path to the target schema.

-- authz_state has exactly one row; its version is bumped by platform.rbac_changed() in the
-- same transaction as every RBAC change. xact remembers which transaction bumped it last so
-- that one transaction is one version.
CREATE TABLE authz_state (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    tenant_id  uuid,
    version    bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    xact       xid8,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO authz_state (id) VALUES (true);

CREATE TABLE users (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id  text        NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 255),
    email        text        CHECK (email IS NULL OR length(email) <= 320),
    display_name text        CHECK (display_name IS NULL OR length(display_name) <= 200),
    status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'suspended')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug           text        NOT NULL UNIQUE CHECK (platform.valid_slug(slug)),
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_team_id uuid        REFERENCES teams (id) ON DELETE RESTRICT,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_team_id IS DISTINCT FROM id)
);
CREATE INDEX teams_parent_idx ON teams (parent_team_id);

-- A team may not become its own ancestor: the hierarchy stays a forest.
-- search_path is pinned to this schema when the function is created, because the trigger runs
-- on connections whose search_path knows nothing of tenants.
CREATE FUNCTION teams_no_cycle() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF NEW.parent_team_id IS NOT NULL AND EXISTS (
        WITH RECURSIVE up(id) AS (
            SELECT NEW.parent_team_id
            UNION
            SELECT t.parent_team_id FROM teams t JOIN up ON t.id = up.id WHERE t.parent_team_id IS NOT NULL
        ) SELECT 1 FROM up WHERE id = NEW.id) THEN
        RAISE EXCEPTION 'team % would become its own ancestor', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER teams_no_cycle BEFORE INSERT OR UPDATE OF parent_team_id ON teams
    FOR EACH ROW EXECUTE FUNCTION teams_no_cycle();

CREATE TABLE team_members (
    team_id    uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_idx ON team_members (user_id);

-- The permission catalog. A code may use '*' for a whole segment: such a row is a pattern that
-- can be granted or denied, never requested.
CREATE TABLE permissions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text        NOT NULL UNIQUE CHECK (platform.valid_permission_code(code, 'tenant')),
    description text,
    is_wildcard boolean     GENERATED ALWAYS AS (code LIKE '%*%') STORED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE roles (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text        NOT NULL UNIQUE CHECK (platform.valid_code(code)),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text,
    level       text        NOT NULL DEFAULT 'member'
                            CHECK (level IN ('owner', 'admin', 'manager', 'member', 'viewer', 'guest')),
    is_system   boolean     NOT NULL DEFAULT false,
    is_active   boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- role_id inherits inherited_role_id: holders of role_id receive inherited_role_id's permissions.
CREATE TABLE role_inherits (
    role_id           uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    inherited_role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, inherited_role_id),
    CHECK (role_id <> inherited_role_id)
);
CREATE INDEX role_inherits_inherited_idx ON role_inherits (inherited_role_id);

CREATE TABLE role_permissions (
    role_id       uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id uuid NOT NULL REFERENCES permissions (id) ON DELETE RESTRICT,
    PRIMARY KEY (role_id, permission_id)
);
CREATE INDEX role_permissions_permission_idx ON role_permissions (permission_id);

-- A role still assigned cannot be deleted (ON DELETE RESTRICT): revoke the assignments first.
CREATE TABLE user_roles (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    uuid        NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    team_id    uuid        REFERENCES teams (id) ON DELETE CASCADE,
    expires_at timestamptz,
    granted_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (user_id, role_id, team_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);
CREATE INDEX user_roles_team_idx ON user_roles (team_id) WHERE team_id IS NOT NULL;

-- is_granted = false makes the row an explicit deny.
CREATE TABLE user_permissions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission_id uuid        NOT NULL REFERENCES permissions (id) ON DELETE RESTRICT,
    team_id       uuid        REFERENCES teams (id) ON DELETE CASCADE,
    is_granted    boolean     NOT NULL DEFAULT true,
    expires_at    timestamptz,
    granted_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (user_id, permission_id, team_id)
);
CREATE INDEX user_permissions_permission_idx ON user_permissions (permission_id);
CREATE INDEX user_permissions_team_idx ON user_permissions (team_id) WHERE team_id IS NOT NULL;

CREATE TABLE settings (
    key        text        PRIMARY KEY CHECK (key ~ '^[a-z0-9_.-]{1,100}$'),
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'user', 'users');
CREATE TRIGGER team_members_changed AFTER INSERT OR UPDATE OR DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'user', 'users');
CREATE TRIGGER user_roles_changed AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'user', 'users');
CREATE TRIGGER user_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON user_permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'user', 'users');
CREATE TRIGGER teams_changed AFTER INSERT OR UPDATE OR DELETE ON teams
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'team', '');
CREATE TRIGGER permissions_changed AFTER INSERT OR UPDATE OR DELETE ON permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'permission', '');
CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'role', '');
CREATE TRIGGER role_inherits_changed AFTER INSERT OR UPDATE OR DELETE ON role_inherits
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'role', '');
CREATE TRIGGER role_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON role_permissions
    FOR EACH ROW EXECUTE FUNCTION platform.rbac_changed('tenant', 'role', '');
