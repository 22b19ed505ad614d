ALTER TABLE tenants DROP COLUMN keycloak_realm_managed;
