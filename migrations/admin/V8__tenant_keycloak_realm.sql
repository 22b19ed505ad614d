-- A tenant whose Keycloak realm neoauthz created (admin tenant create --create-realm): only
-- such a realm is ever disabled on suspend or deleted with the tenant, and only while it still
-- carries the tenant's mark in Keycloak (the realm attribute neoauthz.tenant).
ALTER TABLE tenants ADD COLUMN keycloak_realm_managed boolean NOT NULL DEFAULT false;
