-- A read replica names the primary it streams from. The composite foreign key makes the
-- database itself hold what a replica link means: the linked row is a primary (primary_type is
-- 'primary' whenever the link is set), in the same region (a replica never carries a
-- tenant's data out of its region) and serving the same database (a physical replica has the
-- primary's databases). ON UPDATE RESTRICT keeps it true: a primary with replicas cannot
-- change its type, region or database, nor be deleted.
ALTER TABLE database_connections
    ADD COLUMN primary_id uuid,
    ADD COLUMN primary_type text GENERATED ALWAYS AS (CASE WHEN primary_id IS NOT NULL THEN 'primary' END) STORED,
    ADD CONSTRAINT database_connections_link_key UNIQUE (id, type, region_code, database),
    ADD CONSTRAINT database_connections_primary_fk FOREIGN KEY (primary_id, primary_type, region_code, database)
        REFERENCES database_connections (id, type, region_code, database) ON UPDATE RESTRICT ON DELETE RESTRICT,
    ADD CONSTRAINT database_connections_link_replica_only CHECK (primary_id IS NULL OR type = 'replica');
-- Every new replica is linked. NOT VALID: replicas registered before links existed stay (and
-- stay unused) until an operator re-registers them with their primary.
ALTER TABLE database_connections
    ADD CONSTRAINT database_connections_replica_linked CHECK (type <> 'replica' OR primary_id IS NOT NULL) NOT VALID;
CREATE INDEX database_connections_primary_idx ON database_connections (primary_id) WHERE primary_id IS NOT NULL;
