package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// template is empty: each test gets a fresh, empty database.
var template = &pgtest.Template{Name: "migrate", Key: "empty-v1"}

// baseFiles is a three-version set with undo files for 2 and 3.
var baseFiles = map[string]string{
	"V1__create_items.sql": `-- Unqualified names land in the target schema through search_path.
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM ${schema}.items; $$;
`,
	"V2__seed.sql": "INSERT INTO items VALUES (1, 'one');\r\nINSERT INTO items VALUES (2, 'two');\r\n",
	"U2__seed.sql": "DELETE FROM items;\n",
	"V3__add_tags.sql": `CREATE TABLE tags (item_id int REFERENCES items, tag text NOT NULL);
CREATE INDEX tags_tag ON tags (tag);
`,
	"U3__add_tags.sql": "DROP TABLE tags;\n",
}

func loadSet(t testing.TB, files map[string]string) Set {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys["tenant/"+name] = &fstest.MapFile{Data: []byte(data)}
	}
	set, err := Load(fsys, "tenant")
	require.NoError(t, err)
	return set
}

// with returns a copy of files with changes applied ("" deletes a file).
func with(files map[string]string, changes map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// newDB returns a fresh database's URL and a connection to it.
func newDB(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	url := template.NewDatabase(t)
	return url, connect(t, url)
}

func history(t testing.TB, conn *pgx.Conn, schema string) []HistoryRow {
	t.Helper()
	rows, exists, err := readHistory(context.Background(), conn, schema)
	require.NoError(t, err)
	require.True(t, exists, "got no history table in %s", schema)
	return rows
}

func versions(applied []Applied) []string {
	var out []string
	for _, a := range applied {
		out = append(out, a.Version.String())
	}
	return out
}

func queryInt(t testing.TB, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

func relationExists(t testing.TB, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok))
	return ok
}

func schemaExists(t testing.TB, conn *pgx.Conn, schema string) bool {
	t.Helper()
	return queryInt(t, conn, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 1
}

func TestApplyFresh(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)

	res, err := set.Apply(ctx, conn, "t_acme", Options{InstalledBy: "tester"})
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2", "3"}, versions(res.Applied), "got applied %v", versions(res.Applied))
	assert.True(t, res.From.IsZero(), "got from %q, want none", res.From)
	assert.Equal(t, "3", res.To.String(), "got to %q, want 3", res.To)
	assert.Nil(t, res.Pending, "got pending outside a dry run")

	assert.Equal(t, 2, queryInt(t, conn, `SELECT t_acme.item_count()`), "got wrong item count")
	assert.True(t, relationExists(t, conn, "t_acme.tags"), "got no t_acme.tags")
	assert.False(t, relationExists(t, conn, "public.items"), "got items in public, want it in t_acme only")

	rows := history(t, conn, "t_acme")
	require.Len(t, rows, 3)
	for i, r := range rows {
		m := set.Migrations[i]
		assert.Equal(t, i+1, r.InstalledRank, "row %d: got rank %d", i, r.InstalledRank)
		assert.Equal(t, m.Version.String(), r.Version)
		assert.Equal(t, m.Description, r.Description)
		assert.Equal(t, "SQL", r.Type)
		assert.Equal(t, m.Script, r.Script)
		require.NotNil(t, r.Checksum)
		assert.Equal(t, m.Checksum, *r.Checksum, "row %d: got checksum %d, want %d", i, *r.Checksum, m.Checksum)
		assert.Equal(t, "tester", r.InstalledBy)
		assert.True(t, r.Success)
		assert.WithinDuration(t, time.Now(), r.InstalledOn, time.Hour)
	}

	// Flyway's table shape: its columns, primary key and success index.
	cols := queryInt(t, conn, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 't_acme'
		AND table_name = 'flyway_schema_history' AND (column_name, data_type, is_nullable) IN (
		('installed_rank', 'integer', 'NO'), ('version', 'character varying', 'YES'),
		('description', 'character varying', 'NO'), ('type', 'character varying', 'NO'),
		('script', 'character varying', 'NO'), ('checksum', 'integer', 'YES'),
		('installed_by', 'character varying', 'NO'), ('installed_on', 'timestamp without time zone', 'NO'),
		('execution_time', 'integer', 'NO'), ('success', 'boolean', 'NO'))`)
	assert.Equal(t, 10, cols, "got %d matching history columns, want 10", cols)
	assert.True(t, relationExists(t, conn, "t_acme.flyway_schema_history_s_idx"), "got no success index")
	assert.True(t, relationExists(t, conn, "t_acme.flyway_schema_history_pk"), "got no primary key")

	// The session is left as it was found: no search_path change, no lock held.
	var sp string
	require.NoError(t, conn.QueryRow(ctx, "SHOW search_path").Scan(&sp))
	assert.Equal(t, `"$user", public`, sp, "got search_path %q", sp)
	assert.Equal(t, 0, queryInt(t, conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"),
		"got an advisory lock still held")

	// Default InstalledBy is the database user.
	res, err = set.Apply(ctx, conn, "t_other", Options{})
	require.NoError(t, err)
	require.Len(t, res.Applied, 3)
	assert.Equal(t, "postgres", history(t, conn, "t_other")[0].InstalledBy)
}

func TestApplyAgainIsNoop(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	_, err := set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)

	res, err := set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Applied, "got applied %v, want nothing", versions(res.Applied))
	assert.Equal(t, "3", res.From.String())
	assert.Equal(t, "3", res.To.String())
	assert.Len(t, history(t, conn, "t_acme"), 3)

	st, err := set.Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	assert.True(t, st.Exists)
	assert.Equal(t, "3", st.Current.String())
	assert.Empty(t, st.Pending)
	assert.Empty(t, st.Failed)
	assert.Empty(t, st.Mismatched)
}

func TestApplyConcurrentRunners(t *testing.T) {
	t.Parallel()
	url, _ := newDB(t)
	// A slow first file keeps the runners overlapping.
	set := loadSet(t, with(baseFiles, map[string]string{
		"V1__create_items.sql": baseFiles["V1__create_items.sql"] + "SELECT pg_sleep(0.2);\n",
	}))
	const runners = 6
	conns := make([]*pgx.Conn, runners)
	for i := range conns {
		conns[i] = connect(t, url)
	}
	results := make([]Result, runners)
	errs := make([]error, runners)
	var wg sync.WaitGroup
	for i := range runners {
		wg.Go(func() {
			results[i], errs[i] = set.Apply(context.Background(), conns[i], "t_shared", Options{})
		})
	}
	wg.Wait()

	total := 0
	for i := range runners {
		require.NoError(t, errs[i], "runner %d", i)
		total += len(results[i].Applied)
	}
	assert.Equal(t, 3, total, "got %d files applied over all runners, want 3 (each once)", total)
	// The lock is held for a whole run, so one runner applied everything and the others,
	// having waited, found nothing to do.
	for i := range runners {
		if n := len(results[i].Applied); n != 0 && n != 3 {
			t.Errorf("runner %d: got %d files applied, want 0 or 3", i, n)
		}
	}
	conn := conns[0]
	assert.Equal(t, 3, queryInt(t, conn, `SELECT count(DISTINCT version) FROM t_shared.flyway_schema_history`))
	assert.Equal(t, 3, queryInt(t, conn, `SELECT count(*) FROM t_shared.flyway_schema_history`), "got duplicate history rows")
	assert.Equal(t, 2, queryInt(t, conn, `SELECT count(*) FROM t_shared.items`))
}

func TestApplyFailingFile(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	broken := with(baseFiles, map[string]string{
		"V2__seed.sql": "CREATE TABLE half (id int);\nINSERT INTO items VALUES (1, 'one');\nINSERT INTO nosuch VALUES (1);\n",
	})
	res, err := loadSet(t, broken).Apply(ctx, conn, "t_acme", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `schema "t_acme"`, "got %q, want the schema named", err)
	assert.Contains(t, err.Error(), "V2__seed.sql line 3", "got %q, want the script and line named", err)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "42P01", pgErr.Code, "got SQLSTATE %s, want 42P01 (undefined table)", pgErr.Code)
	assert.Equal(t, []string{"1"}, versions(res.Applied), "got applied %v, want [1]", versions(res.Applied))
	assert.Equal(t, "1", res.To.String())

	// Nothing of V2 is left, V3 did not run, and only V1 is recorded.
	assert.False(t, relationExists(t, conn, "t_acme.half"), "got t_acme.half left by the failed file")
	assert.Equal(t, 0, queryInt(t, conn, "SELECT count(*) FROM t_acme.items"))
	assert.False(t, relationExists(t, conn, "t_acme.tags"), "got V3 applied after a failure")
	assert.Len(t, history(t, conn, "t_acme"), 1)

	// The rerun with the fixed file resumes.
	res, err = loadSet(t, baseFiles).Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"2", "3"}, versions(res.Applied), "got applied %v", versions(res.Applied))
	assert.Equal(t, "1", res.From.String())
	assert.Equal(t, 2, queryInt(t, conn, "SELECT count(*) FROM t_acme.items"))
}

func TestChecksumDrift(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	_, err := set.Apply(ctx, conn, "t_acme", Options{Target: ptr(MustParseVersion("2"))})
	require.NoError(t, err)

	edited := loadSet(t, with(baseFiles, map[string]string{"V2__seed.sql": "INSERT INTO items VALUES (1, 'uno');\n"}))
	res, err := edited.Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrChecksumMismatch)
	var ce *ChecksumError
	require.ErrorAs(t, err, &ce)
	want := ChecksumError{Script: "V2__seed.sql", Schema: "t_acme", Applied: set.Migrations[1].Checksum, Current: edited.Migrations[1].Checksum}
	assert.Equal(t, want, *ce, "got %+v, want %+v", *ce, want)
	assert.Contains(t, err.Error(), `migration V2__seed.sql in schema "t_acme" was edited after it was applied`)
	assert.Contains(t, err.Error(), "--repair")
	assert.Empty(t, res.Applied, "got files applied despite the mismatch")
	assert.False(t, relationExists(t, conn, "t_acme.tags"), "got V3 applied despite the mismatch")

	st, err := edited.Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	assert.Equal(t, []Mismatch{{Script: "V2__seed.sql", Schema: "t_acme", Applied: want.Applied, Current: want.Current}}, st.Mismatched)

	// Dry run with repair changes nothing.
	_, err = edited.Apply(ctx, conn, "t_acme", Options{Repair: true, DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, want.Applied, *history(t, conn, "t_acme")[1].Checksum, "got the checksum repaired in a dry run")

	res, err = edited.Apply(ctx, conn, "t_acme", Options{Repair: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"3"}, versions(res.Applied))
	got := *history(t, conn, "t_acme")[1].Checksum
	assert.Equal(t, want.Current, got, "got stored checksum %d, want %d", got, want.Current)

	_, err = edited.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err, "got an error after repair")
}

func ptr[T any](v T) *T { return &v }

func TestDryRun(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)

	res, err := set.Apply(ctx, conn, "t_dry", Options{DryRun: true})
	require.NoError(t, err)
	assert.Len(t, res.Pending, 3)
	assert.Empty(t, res.Applied)
	assert.Equal(t, "3", res.To.String(), "got to %q, want 3 (where the run would go)", res.To)
	assert.False(t, schemaExists(t, conn, "t_dry"), "got the schema created by a dry run")

	_, err = set.Apply(ctx, conn, "t_dry", Options{Target: ptr(MustParseVersion("1"))})
	require.NoError(t, err)
	res, err = set.Apply(ctx, conn, "t_dry", Options{DryRun: true})
	require.NoError(t, err)
	require.Len(t, res.Pending, 2)
	assert.Equal(t, "V2__seed.sql", res.Pending[0].Script)
	assert.Equal(t, "1", res.From.String())
	assert.Len(t, history(t, conn, "t_dry"), 1, "got history written by a dry run")
	assert.False(t, relationExists(t, conn, "t_dry.tags"))

	// A dry-run rollback lists the undo files and runs none.
	_, err = set.Apply(ctx, conn, "t_dry", Options{})
	require.NoError(t, err)
	res, err = set.Rollback(ctx, conn, "t_dry", MustParseVersion("1"), Options{DryRun: true})
	require.NoError(t, err)
	require.Len(t, res.Pending, 2)
	assert.Equal(t, "3", res.Pending[0].Version.String(), "got undo order %v", res.Pending)
	assert.Equal(t, "1", res.To.String())
	assert.Len(t, history(t, conn, "t_dry"), 3)
	assert.True(t, relationExists(t, conn, "t_dry.tags"))
}

func TestRollbackAndReapply(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	_, err := set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)

	// V1 has no undo file: rolling back past it fails before anything runs.
	_, err = set.Rollback(ctx, conn, "t_acme", Version{}, Options{})
	require.ErrorIs(t, err, ErrNoUndo)
	assert.Contains(t, err.Error(), "1 has no undo file")
	assert.True(t, relationExists(t, conn, "t_acme.tags"), "got V3 undone before the error")
	assert.Len(t, history(t, conn, "t_acme"), 3)

	res, err := set.Rollback(ctx, conn, "t_acme", MustParseVersion("1"), Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"3", "2"}, versions(res.Applied), "got undone %v, want [3 2]", versions(res.Applied))
	for _, a := range res.Applied {
		assert.True(t, a.Undo, "got Undo false for %s", a.Script)
	}
	assert.Equal(t, "U3__add_tags.sql", res.Applied[0].Script)
	assert.Equal(t, "3", res.From.String())
	assert.Equal(t, "1", res.To.String())
	assert.False(t, relationExists(t, conn, "t_acme.tags"))
	assert.Equal(t, 0, queryInt(t, conn, "SELECT count(*) FROM t_acme.items"))

	rows := history(t, conn, "t_acme")
	require.Len(t, rows, 5)
	assert.Equal(t, "UNDO_SQL", rows[3].Type)
	assert.Equal(t, "3", rows[3].Version)
	assert.Equal(t, "U3__add_tags.sql", rows[3].Script)
	assert.Equal(t, set.Migrations[2].Undo.Checksum, *rows[3].Checksum)

	st, err := set.Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	assert.Equal(t, "1", st.Current.String())
	assert.Len(t, st.Pending, 2)

	// Rolling back again to the same version does nothing.
	res, err = set.Rollback(ctx, conn, "t_acme", MustParseVersion("1"), Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Applied)

	res, err = set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"2", "3"}, versions(res.Applied), "got re-applied %v", versions(res.Applied))
	assert.Equal(t, 2, queryInt(t, conn, "SELECT count(*) FROM t_acme.items"))
	assert.Len(t, history(t, conn, "t_acme"), 7)

	// Rollback of a schema never migrated is a no-op that creates nothing.
	res, err = set.Rollback(ctx, conn, "t_none", Version{}, Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Applied)
	assert.False(t, schemaExists(t, conn, "t_none"))
}

const noTx = "-- neoauthz:no-transaction\n"

func TestNoTransactionIndex(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	files := with(baseFiles, map[string]string{
		"V4__tag_index.sql": noTx + "CREATE INDEX CONCURRENTLY tags_item ON tags (item_id);\n" +
			"CREATE INDEX CONCURRENTLY items_name ON items (name);\n",
		"U4__tag_index.sql": noTx + "DROP INDEX CONCURRENTLY tags_item;\nDROP INDEX CONCURRENTLY items_name;\n",
	})
	set := loadSet(t, files)
	res, err := set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2", "3", "4"}, versions(res.Applied))
	assert.True(t, relationExists(t, conn, "t_acme.tags_item"), "got no index t_acme.tags_item")
	assert.Equal(t, 0, queryInt(t, conn, `SELECT count(*) FROM pg_index WHERE NOT indisvalid`))
	rows := history(t, conn, "t_acme")
	assert.True(t, rows[3].Success, "got a failed row for a successful no-transaction file")

	// search_path and timeouts set for the file are reset.
	var sp, lt string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_setting('search_path'), current_setting('lock_timeout')").Scan(&sp, &lt))
	assert.Equal(t, `"$user", public`, sp, "got search_path %q left behind", sp)
	assert.Equal(t, "0", lt, "got lock_timeout %q left behind", lt)

	res, err = set.Rollback(ctx, conn, "t_acme", MustParseVersion("3"), Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"4"}, versions(res.Applied))
	assert.False(t, relationExists(t, conn, "t_acme.tags_item"), "got the index left after undo")
}

func TestNoTransactionInvalidIndex(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	files := with(baseFiles, map[string]string{
		// Two items share a name, so the unique index fails and stays behind, invalid.
		"V4__dup.sql":         "INSERT INTO items VALUES (3, 'two');\n",
		"V5__unique_name.sql": noTx + "CREATE UNIQUE INDEX CONCURRENTLY items_name_key ON items (name);\n",
	})
	res, err := loadSet(t, files).Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrInvalidIndex)
	assert.Contains(t, err.Error(), "items_name_key", "got %q, want the index named", err)
	assert.Contains(t, err.Error(), "V5__unique_name.sql")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "got the PostgreSQL error dropped")
	assert.Equal(t, "23505", pgErr.Code)
	assert.Equal(t, []string{"1", "2", "3", "4"}, versions(res.Applied))
	rows := history(t, conn, "t_acme")
	require.Len(t, rows, 5)
	assert.False(t, rows[4].Success, "got V5 recorded as successful")
	assert.Equal(t, "V5__unique_name.sql", rows[4].Script)

	// The failed row blocks every run, and Status shows it.
	_, err = loadSet(t, files).Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrFailedMigration)
	assert.Contains(t, err.Error(), "V5__unique_name.sql")
	st, err := loadSet(t, files).Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	require.Len(t, st.Failed, 1)
	assert.Equal(t, "V5__unique_name.sql", st.Failed[0].Script)
	assert.Equal(t, "4", st.Current.String())
	require.Len(t, st.Pending, 1, "got V5 not pending after its failure")

	// Fixed file: drop the invalid index, build a plain one; --repair unblocks.
	fixed := with(files, map[string]string{
		"V5__unique_name.sql": noTx + "DROP INDEX CONCURRENTLY IF EXISTS items_name_key;\n" +
			"CREATE INDEX CONCURRENTLY items_name_key ON items (name);\n",
	})
	_, err = loadSet(t, fixed).Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrFailedMigration, "got the failed row ignored without --repair")
	res, err = loadSet(t, fixed).Apply(ctx, conn, "t_acme", Options{Repair: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, versions(res.Applied))
	rows = history(t, conn, "t_acme")
	require.Len(t, rows, 5, "got the failed row kept after repair")
	assert.True(t, rows[4].Success)
	assert.Equal(t, 0, queryInt(t, conn, `SELECT count(*) FROM pg_index WHERE NOT indisvalid`))
}

func TestNoTransactionFailures(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	files := with(baseFiles, map[string]string{
		"V4__idx.sql": noTx + "CREATE INDEX CONCURRENTLY nosuch_idx ON nosuch (id);\n",
	})
	_, err := loadSet(t, files).Apply(ctx, conn, "t_acme", Options{})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrFailedMigration, "got %v", err)
	assert.Contains(t, err.Error(), "V4__idx.sql", "got %q, want the script named", err)
	// Nothing ran, so nothing is recorded and the fixed file applies without --repair.
	assert.Len(t, history(t, conn, "t_acme"), 3)
	files["V4__idx.sql"] = noTx + "CREATE INDEX CONCURRENTLY items_idx ON items (id);\n"
	_, err = loadSet(t, files).Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)

	// A failure after a statement ran cannot be undone: it is recorded as failed.
	files["V5__partial.sql"] = noTx + "CREATE INDEX CONCURRENTLY items_name ON items (name);\nSELECT 1/0;\n"
	_, err = loadSet(t, files).Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrFailedMigration)
	assert.Contains(t, err.Error(), "statement 2", "got %q, want the failed statement named", err)
	rows := history(t, conn, "t_acme")
	require.Len(t, rows, 5)
	assert.False(t, rows[4].Success, "got the partial file recorded as successful")
	assert.True(t, relationExists(t, conn, "t_acme.items_name"), "got the first statement's index missing")
}

func TestFileEndingTransactionRefused(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	set := loadSet(t, map[string]string{"V1__commit.sql": "CREATE TABLE a (id int);\nCOMMIT;\n"})
	_, err := set.Apply(context.Background(), conn, "t_acme", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ended the migration's transaction", "got %q", err)
	assert.Empty(t, history(t, conn, "t_acme"), "got a history row for a file that committed on its own")
}

func TestSchemaNames(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "_", "t_acme", "tenant_template", "a1", strings.Repeat("a", 63), "pgx", "p_g_x"}
	for _, name := range valid {
		assert.True(t, ValidSchemaName(name), "ValidSchemaName(%q): got false, want true", name)
	}
	hostile := []string{"", `"x"`, "a;b", "A", "a.b", "pg_x", "pg_catalog", strings.Repeat("a", 64), "1a", "a b",
		"a\x00", "é", "public; DROP SCHEMA public", "a-b"}
	for _, name := range hostile {
		assert.False(t, ValidSchemaName(name), "ValidSchemaName(%q): got true, want false", name)
	}

	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	for _, name := range hostile {
		_, err := set.Apply(ctx, conn, name, Options{})
		assert.ErrorIs(t, err, ErrInvalidSchemaName, "Apply(%q)", name)
		_, err = set.Rollback(ctx, conn, name, Version{}, Options{})
		assert.ErrorIs(t, err, ErrInvalidSchemaName, "Rollback(%q)", name)
		_, err = set.Status(ctx, conn, name)
		assert.ErrorIs(t, err, ErrInvalidSchemaName, "Status(%q)", name)
	}
	assert.Equal(t, 0, queryInt(t, conn, `SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('public', 'information_schema')`),
		"got a schema created for a hostile name")
}

func TestApplyTarget(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	res, err := set.Apply(ctx, conn, "t_acme", Options{Target: ptr(MustParseVersion("2"))})
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2"}, versions(res.Applied))
	assert.Equal(t, "2", res.To.String())
	assert.False(t, relationExists(t, conn, "t_acme.tags"))

	// A target below the current version is nothing to do, not an error.
	res, err = set.Apply(ctx, conn, "t_acme", Options{Target: ptr(MustParseVersion("1"))})
	require.NoError(t, err)
	assert.Empty(t, res.Applied)

	res, err = set.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"3"}, versions(res.Applied))
}

func TestStatusMissingSchema(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	set := loadSet(t, baseFiles)
	st, err := set.Status(context.Background(), conn, "t_missing")
	require.NoError(t, err)
	assert.False(t, st.Exists)
	assert.True(t, st.Current.IsZero(), "got current %q, want none", st.Current)
	assert.Len(t, st.Pending, 3)
	assert.Empty(t, st.Failed)
	assert.False(t, schemaExists(t, conn, "t_missing"), "got the schema created by Status")
}

func TestNewerVersionApplied(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	_, err := loadSet(t, baseFiles).Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)

	// An older binary knows only V1 and V2: V3 is not an error, and is current.
	older := loadSet(t, with(baseFiles, map[string]string{"V3__add_tags.sql": "", "U3__add_tags.sql": ""}))
	st, err := older.Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	assert.Equal(t, "3", st.Current.String())
	assert.Empty(t, st.Pending)
	res, err := older.Apply(ctx, conn, "t_acme", Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Applied)

	// Nor can it undo V3, which it has no undo file for.
	_, err = older.Rollback(ctx, conn, "t_acme", MustParseVersion("1"), Options{})
	require.ErrorIs(t, err, ErrNoUndo)

	// A version below the applied maximum is refused as out of order.
	branched := loadSet(t, with(older.files(), map[string]string{"V2_5__late.sql": "SELECT 1;"}))
	_, err = branched.Apply(ctx, conn, "t_acme", Options{})
	require.ErrorIs(t, err, ErrOutOfOrder)
	assert.Contains(t, err.Error(), "V2_5__late.sql")
	st, err = branched.Status(ctx, conn, "t_acme")
	require.NoError(t, err)
	require.Len(t, st.Pending, 1)
}

// files turns a set back into file contents, for derived test sets.
func (s Set) files() map[string]string {
	out := map[string]string{}
	for _, m := range s.Migrations {
		out[m.Script] = m.SQL
		if m.Undo != nil {
			out[m.Undo.Script] = m.Undo.SQL
		}
	}
	return out
}

func TestPlaceholders(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, map[string]string{
		"V1__greeting.sql": "CREATE TABLE ${schema}.greeting AS SELECT '${greeting}'::text AS g, '${schema}'::text AS s;",
	})
	_, err := set.Apply(ctx, conn, "t_acme", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "${greeting}", "got %q, want the placeholder named", err)
	assert.Empty(t, history(t, conn, "t_acme"), "got a file run despite a missing placeholder")

	_, err = set.Apply(ctx, conn, "t_acme", Options{Placeholders: map[string]string{"greeting": "hi", "schema": "ignored"}})
	require.NoError(t, err)
	var g, s string
	require.NoError(t, conn.QueryRow(ctx, "SELECT g, s FROM t_acme.greeting").Scan(&g, &s))
	assert.Equal(t, "hi", g)
	assert.Equal(t, `"t_acme"`, s, "got ${schema} = %s, want the quoted schema", s)
	// The checksum is over the raw file, as in Flyway.
	assert.Equal(t, set.Migrations[0].Checksum, *history(t, conn, "t_acme")[0].Checksum)
}

func TestLockWaitCancellable(t *testing.T) {
	t.Parallel()
	url, conn := newDB(t)
	holder := connect(t, url)
	_, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", lockKey("t_acme"))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = loadSet(t, baseFiles).Apply(ctx, conn, "t_acme", Options{})
	require.Error(t, err, "got Apply through a held lock")
	assert.Less(t, time.Since(start), 10*time.Second, "got Apply waiting past its context")
	assert.False(t, schemaExists(t, holder, "t_acme"), "got the schema created without the lock")

	// Once the holder is done, a runner gets through.
	_, err = holder.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey("t_acme"))
	require.NoError(t, err)
	_, err = loadSet(t, baseFiles).Apply(context.Background(), connect(t, url), "t_acme", Options{})
	require.NoError(t, err)
}

func TestApplyRefusesOpenTransaction(t *testing.T) {
	t.Parallel()
	_, conn := newDB(t)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = loadSet(t, baseFiles).Apply(ctx, conn, "t_acme", Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "inside a transaction")
}

func TestLockTimeoutApplies(t *testing.T) {
	t.Parallel()
	url, conn := newDB(t)
	ctx := context.Background()
	set := loadSet(t, baseFiles)
	_, err := set.Apply(ctx, conn, "t_acme", Options{Target: ptr(MustParseVersion("2"))})
	require.NoError(t, err)

	// Another session holds a lock on items; V3 (a foreign key to items) gives up after
	// LockTimeout instead of queueing.
	holder := connect(t, url)
	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "LOCK TABLE t_acme.items IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	_, err = set.Apply(ctx, conn, "t_acme", Options{LockTimeout: 100 * time.Millisecond})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "55P03", pgErr.Code, "got SQLSTATE %s, want 55P03 (lock_not_available)", pgErr.Code)
	assert.Contains(t, err.Error(), "V3__add_tags.sql")
}

func BenchmarkApplySchemas(b *testing.B) {
	url := template.NewDatabase(b)
	conn := connect(b, url)
	ctx := context.Background()
	set := loadSet(b, baseFiles)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := set.Apply(ctx, conn, fmt.Sprintf("bench_%d", i), Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "schemas/s")
}
