package migrate

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Status is what a schema's history says, compared with the set.
type Status struct {
	Schema string
	// Current is the highest version in effect, possibly one the set does not know (applied by
	// a newer binary); the zero Version when none.
	Current Version
	// Pending are the set's migrations not applied, in order (including any below Current,
	// which Apply refuses as out of order).
	Pending []Migration
	// Failed are failed history rows; they block Apply until repaired.
	Failed []HistoryRow
	// Mismatched are applied files edited since.
	Mismatched []Mismatch
	// Exists reports whether the history table exists.
	Exists bool
}

// Status reads schema's history and compares it with the set. It takes no lock and creates
// nothing, so it may run on any connection, while a migration runs too.
func (s Set) Status(ctx context.Context, conn *pgx.Conn, schema string) (Status, error) {
	st := Status{Schema: schema}
	if err := checkSchemaName(schema); err != nil {
		return st, err
	}
	rows, exists, err := readHistory(ctx, conn, schema)
	if err != nil {
		return st, err
	}
	h := analyze(rows)
	st.Exists = exists
	st.Current = h.current()
	st.Pending = s.unapplied(h, nil)
	st.Failed = h.failed
	for _, m := range s.mismatches(h, schema) {
		st.Mismatched = append(st.Mismatched, m.Mismatch)
	}
	return st, nil
}
