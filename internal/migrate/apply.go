package migrate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultLockTimeout is the lock_timeout of each file's transaction when Options.LockTimeout is
// zero: long enough for a busy table, short enough that a migration queued behind a long
// transaction does not block every query on that table for long.
const DefaultLockTimeout = 10 * time.Second

// Options tune Apply and Rollback. The zero value applies everything with the defaults.
type Options struct {
	// DryRun reports what would run and changes nothing: no lock, no schema, no history table.
	DryRun bool
	// Repair accepts edited files and clears failed rows: stored checksums are updated to the
	// files' and failed history rows deleted, as Flyway's repair does, before running.
	Repair bool
	// LockTimeout is the lock_timeout of each file (DefaultLockTimeout when zero).
	LockTimeout time.Duration
	// StatementTimeout is the statement_timeout of each file; zero means none.
	StatementTimeout time.Duration
	// InstalledBy is recorded in the history; empty means the database's current_user.
	InstalledBy string
	// Placeholders replace ${name} in the SQL before it runs (checksums are over the raw
	// files). ${schema} is always the quoted target schema. An unknown placeholder is an
	// error before anything runs.
	Placeholders map[string]string
	// Target stops Apply after this version (nil: apply all). Rollback ignores it.
	Target *Version
}

func (o Options) validate() (Options, error) {
	if o.LockTimeout < 0 || o.StatementTimeout < 0 {
		return o, errors.New("migrate: negative lock or statement timeout")
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if len(o.InstalledBy) > 100 {
		return o, fmt.Errorf("migrate: installed-by %q is longer than 100 characters", o.InstalledBy)
	}
	return o, nil
}

// Applied is one file that ran.
type Applied struct {
	Version             Version
	Description, Script string
	Duration            time.Duration
	// Undo is set for undo files run by Rollback.
	Undo bool
}

// Result reports a run.
type Result struct {
	Schema string
	// From is the version in effect before the run, To after it (in a dry run: the version the
	// run would reach); the zero Version when none.
	From, To Version
	// Applied lists the files that ran, in order; on error, those that ran before it.
	Applied []Applied
	// Pending is set in a dry run only: the migrations that would be applied, or for Rollback
	// those whose undo files would run, in order.
	Pending []Migration
}

// step is one file to run and the history row it writes.
type step struct {
	version       Version
	description   string
	script        string
	checksum      int32
	typ           string
	sql           string
	noTransaction bool
}

// Apply brings schema (created if missing) up to date: it runs the pending migrations in
// version order, each in its own transaction with its history row.
//
// conn must be a dedicated connection, not one borrowed from a pool for a moment: the advisory
// lock and, for no-transaction files, search_path are session state. It must not be inside a
// transaction. If ctx is cancelled, pgx may close conn.
//
// Before running anything Apply refuses a history with failed rows (ErrFailedMigration),
// edited applied files (*ChecksumError) and pending migrations below the highest applied
// version (ErrOutOfOrder); Options.Repair clears the first two. On a failed file it returns
// the files applied so far and an error naming the schema, the file and the PostgreSQL error.
func (s Set) Apply(ctx context.Context, conn *pgx.Conn, schema string, opts Options) (Result, error) {
	res := Result{Schema: schema}
	opts, err := checkArgs(conn, schema, opts)
	if err != nil {
		return res, err
	}
	if !opts.DryRun {
		unlock, err := lock(ctx, conn, schema)
		if err != nil {
			return res, err
		}
		defer unlock()
		if err := createHistory(ctx, conn, schema); err != nil {
			return res, err
		}
	}
	rows, _, err := readHistory(ctx, conn, schema)
	if err != nil {
		return res, err
	}
	st := analyze(rows)
	res.From, res.To = st.current(), st.current()
	mism, err := s.checkHistory(st, schema, opts.Repair)
	if err != nil {
		return res, err
	}
	pending := s.unapplied(st, opts.Target)
	if err := outOfOrder(pending, st, schema); err != nil {
		return res, err
	}
	steps := make([]step, len(pending))
	for i, m := range pending {
		sql, err := substitute(m.SQL, schema, opts.Placeholders)
		if err != nil {
			return res, fmt.Errorf("schema %q: %s: %w", schema, m.Script, err)
		}
		steps[i] = step{m.Version, m.Description, m.Script, m.Checksum, typeSQL, sql, m.NoTransaction}
	}
	if opts.DryRun {
		res.Pending = pending
		if len(pending) > 0 {
			res.To = maxVersion(res.To, pending[len(pending)-1].Version)
		}
		return res, nil
	}
	if err := repair(ctx, conn, schema, st.failed, mism); err != nil {
		return res, err
	}
	for _, stp := range steps {
		d, err := run(ctx, conn, schema, stp, opts)
		if err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, Applied{Version: stp.version, Description: stp.description, Script: stp.script, Duration: d})
		res.To = maxVersion(res.To, stp.version)
	}
	return res, nil
}

// Rollback runs undo files, newest first, until the version in effect is to: every applied
// version above to is undone (the zero Version undoes all). Each undo is recorded as an
// UNDO_SQL row, after which the version counts as not applied, so Apply runs it again. A
// version to undo without an undo file (or unknown to the set) is ErrNoUndo before anything
// runs; the checks and Options are otherwise as for Apply (Target is ignored).
func (s Set) Rollback(ctx context.Context, conn *pgx.Conn, schema string, to Version, opts Options) (Result, error) {
	res := Result{Schema: schema}
	opts, err := checkArgs(conn, schema, opts)
	if err != nil {
		return res, err
	}
	if !opts.DryRun {
		unlock, err := lock(ctx, conn, schema)
		if err != nil {
			return res, err
		}
		defer unlock()
	}
	rows, exists, err := readHistory(ctx, conn, schema)
	if err != nil || !exists {
		return res, err
	}
	st := analyze(rows)
	res.From, res.To = st.current(), st.current()
	mism, err := s.checkHistory(st, schema, opts.Repair)
	if err != nil {
		return res, err
	}
	// Versions to undo, newest first; after undoing the first k, applied[len-1-k] is current.
	var undo []Migration
	var missing []string
	for i := len(st.applied) - 1; i >= 0 && st.applied[i].version.Compare(to) > 0; i-- {
		a := st.applied[i]
		m, ok := s.find(a.version)
		if !ok || m.Undo == nil || a.row.Type == typeBaseline {
			missing = append(missing, a.version.String())
			continue
		}
		undo = append(undo, m)
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("%w: schema %q: cannot roll back to %q: version %s has no undo file; nothing was undone",
			ErrNoUndo, schema, to, strings.Join(missing, ", "))
	}
	steps := make([]step, len(undo))
	for i, m := range undo {
		sql, err := substitute(m.Undo.SQL, schema, opts.Placeholders)
		if err != nil {
			return res, fmt.Errorf("schema %q: %s: %w", schema, m.Undo.Script, err)
		}
		steps[i] = step{m.Version, m.Description, m.Undo.Script, m.Undo.Checksum, typeUndoSQL, sql, m.Undo.NoTransaction}
	}
	after := func(k int) Version { // the version in effect after undoing k files
		if i := len(st.applied) - 1 - k; i >= 0 {
			return st.applied[i].version
		}
		return Version{}
	}
	if opts.DryRun {
		res.Pending = undo
		res.To = after(len(undo))
		return res, nil
	}
	if err := repair(ctx, conn, schema, st.failed, mism); err != nil {
		return res, err
	}
	for k, stp := range steps {
		d, err := run(ctx, conn, schema, stp, opts)
		if err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, Applied{Version: stp.version, Description: stp.description, Script: stp.script, Duration: d, Undo: true})
		res.To = after(k + 1)
	}
	return res, nil
}

func checkArgs(conn *pgx.Conn, schema string, opts Options) (Options, error) {
	if err := checkSchemaName(schema); err != nil {
		return opts, err
	}
	// Our BEGIN would not start a transaction of its own, and our COMMIT would commit the
	// caller's.
	if s := conn.PgConn().TxStatus(); s != 'I' {
		return opts, fmt.Errorf("migrate: schema %q: connection is inside a transaction (status %c)", schema, s)
	}
	return opts.validate()
}

// checkHistory refuses failed rows and checksum mismatches unless repair is set; it returns the
// mismatches to repair.
func (s Set) checkHistory(st state, schema string, repair bool) ([]mismatch, error) {
	mism := s.mismatches(st, schema)
	if repair {
		return mism, nil
	}
	if len(st.failed) > 0 {
		var scripts []string
		for _, r := range st.failed {
			scripts = append(scripts, fmt.Sprintf("%s (installed_rank %d)", r.Script, r.InstalledRank))
		}
		return nil, fmt.Errorf("%w: schema %q: %s failed and may have left partial changes; fix the schema and the file, then rerun with --repair",
			ErrFailedMigration, schema, strings.Join(scripts, ", "))
	}
	if len(mism) > 0 {
		errs := make([]error, len(mism))
		for i, m := range mism {
			errs[i] = &ChecksumError{Script: m.Script, Schema: m.Schema, Applied: m.Applied, Current: m.Current}
		}
		return nil, errors.Join(errs...)
	}
	return nil, nil
}

func outOfOrder(pending []Migration, st state, schema string) error {
	cur := st.current()
	var low []string
	for _, m := range pending {
		if m.Version.Compare(cur) < 0 {
			low = append(low, m.Script)
		}
	}
	if len(low) > 0 {
		return fmt.Errorf("%w: schema %q is at version %s but %s not applied; out-of-order migrations are not supported",
			ErrOutOfOrder, schema, cur, strings.Join(low, ", "))
	}
	return nil
}

// lockKey derives the advisory lock key of a schema. Advisory locks are per database, so the
// key needs only the schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("neoauthz-migrate:" + schema))
	return int64(h.Sum64()) //nolint:gosec // any 64 bits will do as a lock key.
}

// lock takes the schema's session advisory lock, waiting for another runner to finish; the
// wait ends with ctx.
func lock(ctx context.Context, conn *pgx.Conn, schema string) (unlock func(), err error) {
	key := lockKey(schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return nil, fmt.Errorf("schema %q: take migration lock: %w", schema, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		// If this fails the connection is broken, and the session's end releases the lock.
		_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key)
	}, nil
}

// repair deletes failed rows and realigns checksums, in one transaction.
func repair(ctx context.Context, conn *pgx.Conn, schema string, failed []HistoryRow, mism []mismatch) error {
	if len(failed) == 0 && len(mism) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if len(failed) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM "+historyIdent(schema)+" WHERE NOT success"); err != nil {
				return err
			}
		}
		for _, m := range mism {
			if _, err := tx.Exec(ctx, "UPDATE "+historyIdent(schema)+" SET checksum = $1 WHERE installed_rank = $2", m.Current, m.rank); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("schema %q: repair history: %w", schema, err)
	}
	return nil
}

var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_.:-]+)\}`)

// substitute replaces ${name} placeholders; ${schema} is the quoted schema.
func substitute(sql, schema string, values map[string]string) (string, error) {
	var unknown []string
	out := placeholder.ReplaceAllStringFunc(sql, func(m string) string {
		name := m[2 : len(m)-1]
		if name == "schema" {
			return pgx.Identifier{schema}.Sanitize()
		}
		v, ok := values[name]
		if !ok {
			if !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("no value for placeholder ${%s}", strings.Join(unknown, "}, ${"))
	}
	return out, nil
}

func searchPath(schema string) string {
	return pgx.Identifier{schema}.Sanitize() + ", " + pgx.Identifier{"platform"}.Sanitize() + ", " + pgx.Identifier{"public"}.Sanitize()
}

func millis(d time.Duration) string {
	ms := d.Milliseconds()
	if d > 0 && ms == 0 {
		ms = 1 // PostgreSQL reads 0 as "no timeout"
	}
	return fmt.Sprintf("%dms", ms)
}

const setSession = `SELECT set_config('lock_timeout', $1, $4), set_config('statement_timeout', $2, $4), set_config('search_path', $3, $4)`

// asyncCommit lets a file's transaction commit without waiting for its WAL flush. Safe here:
// the file and its history row commit together, so a crash can only lose both, and the next
// run applies the file again; across a thousand tenant schemas the waits added up.
const asyncCommit = `SET LOCAL synchronous_commit = off`

// run runs one file and records it.
func run(ctx context.Context, conn *pgx.Conn, schema string, stp step, opts Options) (time.Duration, error) {
	if stp.noTransaction {
		return runNoTransaction(ctx, conn, schema, stp, opts)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, stepError(schema, stp, "begin", err)
	}
	// After Commit this is a no-op; after a failure it discards everything the file did.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// SET LOCAL, through set_config(..., true): the settings end with the transaction.
	if _, err := tx.Exec(ctx, setSession, millis(opts.LockTimeout), millis(opts.StatementTimeout), searchPath(schema), true); err != nil {
		return 0, stepError(schema, stp, "set session", err)
	}
	if _, err := tx.Exec(ctx, asyncCommit); err != nil {
		return 0, stepError(schema, stp, "set session", err)
	}
	start := time.Now()
	// The simple protocol runs a multi-statement file in one round trip.
	if _, err := conn.PgConn().Exec(ctx, stp.sql).ReadAll(); err != nil {
		return 0, stepError(schema, stp, "", err)
	}
	d := time.Since(start)
	// A COMMIT or ROLLBACK in the file would leave the history row to autocommit on its own
	// (or to a transaction of the file's making): refuse rather than record the wrong thing.
	if s := conn.PgConn().TxStatus(); s != 'T' {
		return 0, stepError(schema, stp, "", errors.New("the file ended the migration's transaction (COMMIT or ROLLBACK in a file); "+
			"split the file, or mark it -- neoauthz:no-transaction"))
	}
	if err := record(ctx, tx, schema, stp, d, true, opts.InstalledBy); err != nil {
		return 0, stepError(schema, stp, "record history", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, stepError(schema, stp, "commit", err)
	}
	return d, nil
}

// runNoTransaction runs a file statement by statement outside a transaction (a multi-statement
// query string is an implicit transaction, which CREATE INDEX CONCURRENTLY refuses). What it
// did cannot be rolled back, so a failure after the first statement, or an invalid index left
// behind, is recorded as a failed row, as Flyway records non-transactional failures.
func runNoTransaction(ctx context.Context, conn *pgx.Conn, schema string, stp step, opts Options) (time.Duration, error) {
	if _, err := conn.Exec(ctx, setSession, millis(opts.LockTimeout), millis(opts.StatementTimeout), searchPath(schema), false); err != nil {
		return 0, stepError(schema, stp, "set session", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = conn.PgConn().Exec(ctx, "RESET search_path; RESET lock_timeout; RESET statement_timeout").ReadAll()
	}()
	start := time.Now()
	var runErr error
	ran := 0
	for _, stmt := range splitStatements(stp.sql) {
		if _, runErr = conn.PgConn().Exec(ctx, stmt).ReadAll(); runErr != nil {
			break
		}
		ran++
	}
	d := time.Since(start)
	// Check and record even when ctx has ended: a failed row must not be lost.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	invalid, err := invalidIndexes(bg, conn, schema)
	if err != nil {
		return 0, stepError(schema, stp, "look for invalid indexes", errors.Join(runErr, err))
	}
	switch {
	case runErr == nil && len(invalid) == 0:
		if err := record(ctx, conn, schema, stp, d, true, opts.InstalledBy); err != nil {
			return 0, stepError(schema, stp, "record history", err)
		}
		return d, nil
	case runErr != nil && ran == 0 && len(invalid) == 0:
		// The first statement failed without leaving anything: nothing to record, and a rerun
		// starts cleanly.
		return 0, stepError(schema, stp, "", runErr)
	}
	recErr := record(bg, conn, schema, stp, d, false, opts.InstalledBy)
	if recErr != nil {
		recErr = fmt.Errorf("record failed history row: %w", recErr)
	}
	if len(invalid) > 0 {
		err := fmt.Errorf("%w: schema %q: %s left invalid index %s; it is recorded as failed: drop the index, fix the cause, then rerun with --repair",
			ErrInvalidIndex, schema, stp.script, strings.Join(invalid, ", "))
		if cause := errors.Join(runErr, recErr); cause != nil {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		return 0, err
	}
	return 0, fmt.Errorf("%w: %w", ErrFailedMigration,
		stepError(schema, stp, fmt.Sprintf("statement %d (after %d ran outside a transaction; recorded as failed, rerun with --repair once fixed)", ran+1, ran),
			errors.Join(runErr, recErr)))
}

// execer is pgx.Conn or pgx.Tx.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func record(ctx context.Context, db execer, schema string, stp step, d time.Duration, success bool, installedBy string) error {
	// installed_rank is computed in the insert: the advisory lock keeps it unique.
	_, err := db.Exec(ctx, `INSERT INTO `+historyIdent(schema)+`
		(installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
		SELECT coalesce(max(installed_rank), 0) + 1, $1, $2, $3, $4, $5, coalesce(nullif($6::text, ''), current_user), $7, $8
		FROM `+historyIdent(schema),
		stp.version.String(), stp.description, stp.typ, stp.script, stp.checksum, installedBy, int32(d.Milliseconds()), success) //nolint:gosec // a migration does not run for 24 days.
	return err
}

func invalidIndexes(ctx context.Context, conn *pgx.Conn, schema string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND NOT i.indisvalid ORDER BY 1`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// stepError names the schema and file, and where PostgreSQL gives a position, the line.
func stepError(schema string, stp step, what string, err error) error {
	where := stp.script
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Position > 0 && what == "" {
		where = fmt.Sprintf("%s line %d", stp.script, lineAt(stp.sql, int(pgErr.Position)))
	}
	if what != "" {
		where += ": " + what
	}
	verb := "migration"
	if stp.typ == typeUndoSQL {
		verb = "undo"
	}
	return fmt.Errorf("schema %q: %s %s: %w", schema, verb, where, err)
}

// lineAt returns the 1-based line of the pos-th character (1-based, as PostgreSQL counts).
func lineAt(sql string, pos int) int {
	line, n := 1, 0
	for _, r := range sql {
		n++
		if n >= pos {
			break
		}
		if r == '\n' {
			line++
		}
	}
	return line
}
