-- A tenant's schema and database names are its own for as long as its row exists, deleted or
-- not: a soft-deleted tenant still owns its data, so no other tenant may be placed there, and
-- purge (which removes the row) drops only what the row names. Names are derived from the slug
-- so that two slugs never map to one name; these indexes make the database refuse it anyway.
-- A realm belongs to one tenant whatever its case.
DROP INDEX tenants_placement_idx;
CREATE UNIQUE INDEX tenants_schema_name_idx ON tenants (schema_name);
CREATE UNIQUE INDEX tenants_database_name_idx ON tenants (database_name) WHERE database_name IS NOT NULL;
CREATE UNIQUE INDEX tenants_realm_lower_idx ON tenants (lower(external_auth_realm));
