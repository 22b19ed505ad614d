-- Shared types and functions of neoauthz, applied to every database it manages (schema platform).

CREATE SCHEMA IF NOT EXISTS platform;

-- valid_identifier: schema and database names that may be quoted into SQL.
CREATE OR REPLACE FUNCTION platform.valid_identifier(name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT name ~ '^[a-z_][a-z0-9_]{0,62}$' AND name !~ '^pg_' $$;

-- valid_slug: tenant, organization and role slugs/codes (lowercase, digits, dashes).
CREATE OR REPLACE FUNCTION platform.valid_slug(slug text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' $$;

-- valid_code: role codes (lowercase, digits, underscores, dashes).
CREATE OR REPLACE FUNCTION platform.valid_code(code text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT code ~ '^[a-z][a-z0-9_-]{0,62}$' $$;

-- valid_realm: Keycloak realm names neoauthz accepts (no dots, quotes, slashes or upper case,
-- because the realm is part of the issuer URL compared byte for byte).
CREATE OR REPLACE FUNCTION platform.valid_realm(realm text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT realm ~ '^[a-z0-9][a-z0-9_-]{0,99}$' $$;

-- valid_permission_code: resource.action.scope with lowercase segments; '*' may stand for a
-- whole segment (grants and denies only; requests never carry one). Level is 'tenant' or 'platform'.
CREATE OR REPLACE FUNCTION platform.valid_permission_code(code text, level text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT code ~ ('^([a-z0-9_-]+|\*)\.([a-z0-9_-]+|\*)\.('
        || CASE level WHEN 'tenant' THEN 'own|team|tenant' WHEN 'platform' THEN 'user|tenant|platform' ELSE '$^' END
        || '|\*)$')
$$;

-- rbac_changed is the trigger behind every RBAC table. In the same transaction as the change it
-- bumps the schema's authz_state.version (once per transaction, so one commit is one version)
-- and sends a NOTIFY on channel 'neoauthz' with
--   {"level","tenant_id","kind","user_id","role_id","version","at"}
-- ("at": the transaction's start in microseconds since the epoch, for staleness metrics; the
-- same for every row of a transaction so PostgreSQL folds identical notifications)
-- Arguments: level ('tenant' | 'platform'), kind ('user' | 'role' | 'team' | 'permission' |
-- 'tenant'), and for kind 'user' the table holding the users' external ids.
CREATE OR REPLACE FUNCTION platform.rbac_changed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    lvl         text := TG_ARGV[0];
    kind        text := TG_ARGV[1];
    users_table text := TG_ARGV[2];
    changed     jsonb[] := '{}';
    r           jsonb;
    v           bigint;
    t           uuid;
    tid         uuid;
    uid         text;
    rid         text;
    sent        text[] := '{}';
    key         text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN changed := changed || to_jsonb(OLD); END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN changed := changed || to_jsonb(NEW); END IF;

    -- The first change of a transaction bumps the version; later rows of the same transaction
    -- reuse it from transaction-local settings instead of updating authz_state again (bulk
    -- changes such as seeding a catalog stay cheap).
    v := nullif(current_setting('neoauthz.version_' || TG_TABLE_SCHEMA, true), '')::bigint;
    IF v IS NULL THEN
        EXECUTE format(
            'UPDATE %I.authz_state
                SET version = CASE WHEN xact = pg_current_xact_id() THEN version ELSE version + 1 END,
                    xact = pg_current_xact_id(), updated_at = now()
              RETURNING version, tenant_id', TG_TABLE_SCHEMA)
            INTO v, t;
        IF v IS NULL THEN
            RAISE EXCEPTION 'neoauthz: %.authz_state has no row', TG_TABLE_SCHEMA;
        END IF;
        PERFORM set_config('neoauthz.version_' || TG_TABLE_SCHEMA, v::text, true);
        PERFORM set_config('neoauthz.tenant_' || TG_TABLE_SCHEMA, coalesce(t::text, ''), true);
    ELSE
        t := nullif(current_setting('neoauthz.tenant_' || TG_TABLE_SCHEMA, true), '')::uuid;
    END IF;

    FOREACH r IN ARRAY changed LOOP
        uid := NULL; rid := NULL; tid := t;
        IF kind = 'user' THEN
            IF TG_TABLE_NAME = users_table THEN
                uid := r->>'external_id';
            ELSE
                EXECUTE format('SELECT external_id FROM %I.%I WHERE id = $1', TG_TABLE_SCHEMA, users_table)
                    INTO uid USING (r->>'user_id')::uuid;
                -- The user row is gone in this very transaction; its own trigger has notified.
                CONTINUE WHEN uid IS NULL;
            END IF;
        ELSIF kind = 'role' THEN
            rid := coalesce(r->>'role_id', r->>'id');
        ELSIF kind = 'tenant' THEN
            tid := (r->>'id')::uuid;
        END IF;
        key := concat_ws('/', uid, rid, tid);
        CONTINUE WHEN key = ANY (sent);
        sent := sent || key;
        PERFORM pg_notify('neoauthz', json_build_object(
            'level', lvl, 'tenant_id', tid, 'kind', kind,
            'user_id', uid, 'role_id', rid, 'version', v,
            'at', (extract(epoch FROM now()) * 1000000)::bigint)::text);
    END LOOP;
    RETURN NULL;
END
$$;
