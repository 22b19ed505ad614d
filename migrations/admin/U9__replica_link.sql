DROP INDEX database_connections_primary_idx;
ALTER TABLE database_connections
    DROP CONSTRAINT database_connections_replica_linked,
    DROP CONSTRAINT database_connections_link_replica_only,
    DROP CONSTRAINT database_connections_primary_fk,
    DROP CONSTRAINT database_connections_link_key,
    DROP COLUMN primary_type,
    DROP COLUMN primary_id;
