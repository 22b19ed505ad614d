-- A tenant's settings hold its accepted token audiences (settings.audiences), which identity
-- reads: a change must reach every pdp like a status or realm change does.
DROP TRIGGER tenants_changed ON tenants;
CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
       OR OLD.external_auth_realm IS DISTINCT FROM NEW.external_auth_realm
       OR OLD.schema_name IS DISTINCT FROM NEW.schema_name
       OR OLD.database_name IS DISTINCT FROM NEW.database_name
       OR OLD.database_connection_id IS DISTINCT FROM NEW.database_connection_id
       OR OLD.settings IS DISTINCT FROM NEW.settings)
    EXECUTE FUNCTION platform.rbac_changed('tenant', 'tenant', '');
