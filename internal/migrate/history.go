package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// historyTable is Flyway's default history table name.
const historyTable = "flyway_schema_history"

// History row types, as Flyway writes them.
const (
	typeSQL      = "SQL"
	typeUndoSQL  = "UNDO_SQL"
	typeBaseline = "BASELINE"
	typeDelete   = "DELETE"
)

// HistoryRow is one row of flyway_schema_history.
type HistoryRow struct {
	InstalledRank int
	// Version is "" for rows without one (Flyway's schema-creation marker, say).
	Version, Description, Type, Script string
	Checksum                           *int32
	InstalledBy                        string
	InstalledOn                        time.Time
	// ExecutionTime is in milliseconds.
	ExecutionTime int
	Success       bool
}

func historyIdent(schema string) string {
	return pgx.Identifier{schema, historyTable}.Sanitize()
}

// createHistory creates the schema (when missing) and its history table exactly as Flyway's
// PostgreSQL createMetaDataTable.sql does, so Flyway can read it. The caller holds the lock.
func createHistory(ctx context.Context, conn *pgx.Conn, schema string) error {
	var schemaExists, tableExists bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1), to_regclass($2) IS NOT NULL`,
		schema, historyIdent(schema)).Scan(&schemaExists, &tableExists)
	if err != nil {
		return fmt.Errorf("schema %q: look for history table: %w", schema, err)
	}
	if tableExists {
		return nil
	}
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	// CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database even when the
	// schema exists, so a role that owns only its schemas could not run it.
	if !schemaExists {
		fmt.Fprintf(&b, "CREATE SCHEMA %s;\n", pgx.Identifier{schema}.Sanitize())
	}
	fmt.Fprintf(&b, `CREATE TABLE %s (
    installed_rank integer NOT NULL,
    version varchar(50),
    description varchar(200) NOT NULL,
    type varchar(20) NOT NULL,
    script varchar(1000) NOT NULL,
    checksum integer,
    installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL,
    CONSTRAINT %s PRIMARY KEY (installed_rank)
);
CREATE INDEX %s ON %s (success);
COMMIT;`, historyIdent(schema), pgx.Identifier{historyTable + "_pk"}.Sanitize(),
		pgx.Identifier{historyTable + "_s_idx"}.Sanitize(), historyIdent(schema))
	if _, err := conn.PgConn().Exec(ctx, b.String()).ReadAll(); err != nil {
		// A failed statement leaves the explicit transaction open and aborted.
		_, _ = conn.PgConn().Exec(context.WithoutCancel(ctx), "ROLLBACK").ReadAll()
		return fmt.Errorf("schema %q: create history table: %w", schema, err)
	}
	return nil
}

// readHistory returns the history rows in installed_rank order; exists is false (and rows nil)
// when the table is missing. It creates nothing.
func readHistory(ctx context.Context, conn *pgx.Conn, schema string) (rows []HistoryRow, exists bool, err error) {
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, historyIdent(schema)).Scan(&exists); err != nil {
		return nil, false, fmt.Errorf("schema %q: look for history table: %w", schema, err)
	}
	if !exists {
		return nil, false, nil
	}
	r, err := conn.Query(ctx, `SELECT installed_rank, coalesce(version, ''), description, type, script, checksum,
		installed_by, installed_on, execution_time, success FROM `+historyIdent(schema)+` ORDER BY installed_rank`)
	if err != nil {
		return nil, true, fmt.Errorf("schema %q: read history: %w", schema, err)
	}
	rows, err = pgx.CollectRows(r, func(row pgx.CollectableRow) (HistoryRow, error) {
		var h HistoryRow
		err := row.Scan(&h.InstalledRank, &h.Version, &h.Description, &h.Type, &h.Script, &h.Checksum,
			&h.InstalledBy, &h.InstalledOn, &h.ExecutionTime, &h.Success)
		return h, err
	})
	if err != nil {
		return nil, true, fmt.Errorf("schema %q: read history: %w", schema, err)
	}
	return rows, true, nil
}

// appliedVersion is a version currently in effect and the history row that put it there.
type appliedVersion struct {
	version Version
	row     HistoryRow
}

// state is what the history says about a schema.
type state struct {
	// applied are the versions in effect, lowest first. A version whose latest row is an undo
	// is not among them.
	applied []appliedVersion
	// baseline is the highest BASELINE row's version: lower versions count as applied.
	baseline Version
	failed   []HistoryRow
}

func analyze(rows []HistoryRow) state {
	var st state
	byKey := map[string]appliedVersion{}
	for _, r := range rows {
		if !r.Success {
			st.failed = append(st.failed, r)
			continue
		}
		v, err := ParseVersion(r.Version)
		if err != nil {
			// Rows without a version (Flyway's schema marker, repeatable migrations) do not
			// take part in versioning.
			continue
		}
		switch r.Type {
		case typeUndoSQL, typeDelete:
			delete(byKey, v.key())
		case typeBaseline:
			st.baseline = maxVersion(st.baseline, v)
			byKey[v.key()] = appliedVersion{v, r}
		default:
			byKey[v.key()] = appliedVersion{v, r}
		}
	}
	for _, a := range byKey {
		st.applied = append(st.applied, a)
	}
	slices.SortFunc(st.applied, func(a, b appliedVersion) int { return a.version.Compare(b.version) })
	return st
}

// current is the highest version in effect, whether or not the set knows it (a newer binary
// may have applied it).
func (st state) current() Version {
	if len(st.applied) == 0 {
		return Version{}
	}
	return st.applied[len(st.applied)-1].version
}

func (st state) isApplied(v Version) (HistoryRow, bool) {
	i, ok := slices.BinarySearchFunc(st.applied, v, func(a appliedVersion, v Version) int { return a.version.Compare(v) })
	if !ok {
		return HistoryRow{}, false
	}
	return st.applied[i].row, true
}

// mismatch is a Mismatch with the row to repair.
type mismatch struct {
	Mismatch
	rank int
}

// mismatches lists applied files whose checksum changed. Rows without a checksum (baselines,
// Java migrations) are not checked, as in Flyway.
func (s Set) mismatches(st state, schema string) []mismatch {
	var out []mismatch
	for _, m := range s.Migrations {
		row, ok := st.isApplied(m.Version)
		if !ok || row.Checksum == nil || *row.Checksum == m.Checksum {
			continue
		}
		out = append(out, mismatch{
			Mismatch: Mismatch{Script: m.Script, Schema: schema, Applied: *row.Checksum, Current: m.Checksum},
			rank:     row.InstalledRank,
		})
	}
	return out
}

// unapplied lists the set's migrations not in effect, above any baseline and up to target.
func (s Set) unapplied(st state, target *Version) []Migration {
	var out []Migration
	for _, m := range s.Migrations {
		if _, ok := st.isApplied(m.Version); ok {
			continue
		}
		if !st.baseline.IsZero() && m.Version.Compare(st.baseline) <= 0 {
			continue
		}
		if target != nil && m.Version.Compare(*target) > 0 {
			continue
		}
		out = append(out, m)
	}
	return out
}

func maxVersion(a, b Version) Version {
	if a.Compare(b) >= 0 {
		return a
	}
	return b
}
