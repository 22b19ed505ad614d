-- Just-in-time user sync: the one write the pdp may make, and only through this function.
--
-- sync_user(external_id, email, username, profile_interval) is SECURITY DEFINER: it runs with
-- the rights of the schema's owner, so the pdp's database role needs no INSERT or UPDATE on
-- any table, only EXECUTE on this function (granted by the operator; PUBLIC may not run it).
-- It takes only what a verified token says (sub, email, preferred_username); whether sync is
-- on and which roles a new user gets are read here, from this schema's settings row
-- 'user_sync' ({"enabled": true, "default_roles": ["member"]}, written by the admin API), so
-- a caller can neither turn it on nor choose roles.
--
-- Returns the outcome and the schema's version after the call:
--   disabled   sync is off for the tenant: nothing written
--   created    the user was inserted with the default roles (one audit_outbox row)
--   unchanged  the user exists and its profile matches (or the token carries no profile)
--   deferred   the profile differs but the row changed less than profile_interval ago
--   updated    email and/or display name were updated (one audit_outbox row)
-- Concurrent first calls for one user insert one row (ON CONFLICT): the others see it and
-- report unchanged. Email and username that are too long or malformed are treated as absent,
-- never stored; an absent field never clears a stored one.
CREATE FUNCTION sync_user(p_external_id text, p_email text, p_username text, p_profile_interval interval,
                          OUT outcome text, OUT version bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
AS $$
DECLARE
    cfg   jsonb;
    uid   uuid;
    cur   record;
    role_codes text[];
BEGIN
    IF p_external_id IS NULL OR length(p_external_id) NOT BETWEEN 1 AND 255 OR p_external_id ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'sync_user: invalid external id' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_email IS NOT NULL AND (length(p_email) > 320 OR p_email !~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$') THEN
        p_email := NULL;
    END IF;
    IF p_username IS NOT NULL AND (length(p_username) NOT BETWEEN 1 AND 200 OR p_username ~ '[[:cntrl:]]') THEN
        p_username := NULL;
    END IF;

    SELECT s.value INTO cfg FROM settings s WHERE s.key = 'user_sync';
    IF cfg IS NULL OR jsonb_typeof(cfg) <> 'object' OR cfg->'enabled' IS DISTINCT FROM 'true'::jsonb THEN
        outcome := 'disabled';
        SELECT a.version INTO version FROM authz_state a;
        RETURN;
    END IF;

    INSERT INTO users (external_id, email, display_name) VALUES (p_external_id, p_email, p_username)
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id INTO uid;
    IF uid IS NOT NULL THEN
        role_codes := ARRAY(SELECT e #>> '{}' FROM jsonb_array_elements(
                         CASE jsonb_typeof(cfg->'default_roles') WHEN 'array' THEN cfg->'default_roles' ELSE '[]' END) e
                        WHERE jsonb_typeof(e) = 'string');
        -- A default role deleted since it was configured is skipped; the audit row names what
        -- was assigned.
        role_codes := ARRAY(SELECT r.code FROM roles r WHERE r.code = ANY (role_codes) ORDER BY r.code);
        INSERT INTO user_roles (user_id, role_id, granted_by)
            SELECT uid, r.id, 'system:user-sync' FROM roles r WHERE r.code = ANY (role_codes)
            ON CONFLICT DO NOTHING;
        INSERT INTO audit_outbox (actor, action, target_type, target_id, after)
            VALUES ('system:user-sync', 'tenant_user.sync_create', 'tenant_user', uid::text,
                    jsonb_build_object('id', uid, 'external_id', p_external_id, 'email', p_email,
                                       'display_name', p_username, 'roles', to_jsonb(role_codes)));
        outcome := 'created';
        SELECT a.version INTO version FROM authz_state a;
        RETURN;
    END IF;

    SELECT u.id, u.email, u.display_name, u.updated_at INTO cur FROM users u WHERE u.external_id = p_external_id FOR UPDATE;
    IF NOT FOUND
       OR (p_email IS NULL OR p_email IS NOT DISTINCT FROM cur.email)
          AND (p_username IS NULL OR p_username IS NOT DISTINCT FROM cur.display_name) THEN
        outcome := 'unchanged';
    ELSIF cur.updated_at > now() - greatest(coalesce(p_profile_interval, interval '0'), interval '0') THEN
        outcome := 'deferred';
    ELSE
        UPDATE users SET email = coalesce(p_email, email), display_name = coalesce(p_username, display_name),
                         updated_at = now()
         WHERE id = cur.id;
        INSERT INTO audit_outbox (actor, action, target_type, target_id, before, after)
            VALUES ('system:user-sync', 'tenant_user.sync_update', 'tenant_user', cur.id::text,
                    jsonb_build_object('email', cur.email, 'display_name', cur.display_name),
                    jsonb_build_object('email', coalesce(p_email, cur.email), 'display_name', coalesce(p_username, cur.display_name)));
        outcome := 'updated';
    END IF;
    SELECT a.version INTO version FROM authz_state a;
END
$$;

-- A SECURITY DEFINER function must not find its tables through the caller's search_path (a
-- caller's temporary table named users would stand in for the real one): pin it to this
-- schema, with pg_temp last.
DO $pin$
BEGIN
    EXECUTE format('ALTER FUNCTION sync_user(text, text, text, interval) SET search_path = %I, pg_temp', current_schema());
END
$pin$;

-- Functions are executable by PUBLIC by default; this one only by roles the operator grants.
REVOKE ALL ON FUNCTION sync_user(text, text, text, interval) FROM PUBLIC;
