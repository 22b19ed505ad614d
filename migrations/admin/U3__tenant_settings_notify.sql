DROP TRIGGER tenants_changed ON tenants;
CREATE TRIGGER tenants_changed AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
       OR OLD.external_auth_realm IS DISTINCT FROM NEW.external_auth_realm
       OR OLD.schema_name IS DISTINCT FROM NEW.schema_name
       OR OLD.database_name IS DISTINCT FROM NEW.database_name
       OR OLD.database_connection_id IS DISTINCT FROM NEW.database_connection_id)
    EXECUTE FUNCTION platform.rbac_changed('tenant', 'tenant', '');
