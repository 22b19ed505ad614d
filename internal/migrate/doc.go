// Package migrate applies one migration set to one PostgreSQL schema, keeping a
// Flyway-compatible history table (flyway_schema_history) in that schema.
//
// A set is a folder of V<version>__<description>.sql files, each with an optional
// U<version>__<description>.sql undo file (see [Load]). [Set.Apply] brings a schema up to date,
// [Set.Rollback] runs undo files and [Set.Status] reads the history without changing anything.
//
// The history table has Flyway's columns, types ("SQL", "UNDO_SQL") and checksums, so a schema
// migrated here can be inspected or taken over by Flyway and the other way round.
//
// Apply and Rollback hold a session advisory lock per (database, schema) for the whole run, so
// concurrent runners on the same schema serialise: the second waits, then finds nothing to do.
// Each file runs in its own transaction together with its history row, so a failed file leaves
// nothing behind and a rerun resumes where the failed run stopped. Files whose first line is
// "-- neoauthz:no-transaction" run outside a transaction (for CREATE INDEX CONCURRENTLY); their
// failures are recorded as failed history rows, which block later runs until repaired, as in
// Flyway.
//
// Orchestration across many schemas and databases (registry, run records, CLI) is built on top
// of this package; it knows nothing about tenants.
package migrate
