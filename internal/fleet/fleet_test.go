package fleet_test

import (
	"context"
	"io/fs"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/migrate"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	"github.com/neofast/neoauthz/migrations"
)

func provision(t *testing.T, w *testenv.World, region string, slugs ...string) {
	t.Helper()
	for _, s := range slugs {
		_, err := w.Tenants.Create(context.Background(), tenancy.CreateRequest{Slug: s, Region: region, Realm: s + "-realm"})
		require.NoError(t, err, "provision %s", s)
	}
}

func appliedVersions(t *testing.T, run fleet.Run) int {
	t.Helper()
	n := 0
	for _, r := range run.Results {
		n += len(r.Applied)
	}
	return n
}

func TestApplyAllThenNoop(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "fleet")
	w.AddRegion(t, "us-east-1")
	w.AddDatabase(t, "us-east-1", "us-analytics", "analytics")
	provision(t, w, "us-east-1", "acme", "globex")

	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAll})
	require.NoError(t, err)
	assert.Equal(t, "succeeded", run.Status)
	assert.Equal(t, 5, run.Total, "admin, regional, 2 tenants, analytics")
	assert.Positive(t, appliedVersions(t, run), "the analytics database was never migrated before")

	again, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeAll})
	require.NoError(t, err)
	assert.Zero(t, appliedVersions(t, again), "re-apply must be a no-op")

	var recorded, results int
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM admin.migration_runs WHERE status = 'succeeded'`).Scan(&recorded))
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT count(*) FROM admin.migration_results WHERE run_id = $1`, again.ID).Scan(&results))
	assert.Equal(t, 2, recorded)
	assert.Equal(t, len(again.Results), results, "every target result is recorded")

	st, err := w.Fleet.Status(ctx, fleet.Plan{})
	require.NoError(t, err)
	for _, s := range st {
		assert.Empty(t, s.Pending, "%s/%s pending", s.Target, s.Schema)
		assert.Equal(t, s.Latest, s.Current, "%s/%s", s.Target, s.Schema)
	}
}

// projects is the test's extra tenant migration, the version after the project's latest
// (projectsPrev), so that the tests keep working when the project adds tenant migrations.
var projectsPrev, projectsNext, projectsFile = func() (string, string, string) {
	set, err := migrate.Load(migrations.FS, "tenant")
	if err != nil {
		panic(err)
	}
	prev, err := strconv.Atoi(set.Latest().String())
	if err != nil {
		panic(err)
	}
	return strconv.Itoa(prev), strconv.Itoa(prev + 1), "V" + strconv.Itoa(prev+1) + "__projects.sql"
}()

// extended returns the project's sets with a next tenant migration, projectsFile (and its undo).
func extended(t *testing.T, w *testenv.World, v3, u3 string) fleet.Sets {
	t.Helper()
	files := fstest.MapFS{}
	require.NoError(t, fs.WalkDir(migrations.FS, "tenant", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		files[path] = &fstest.MapFile{Data: b}
		return err
	}))
	files["tenant/"+projectsFile] = &fstest.MapFile{Data: []byte(v3)}
	files["tenant/U"+projectsNext+"__projects.sql"] = &fstest.MapFile{Data: []byte(u3)}
	set, err := migrate.Load(files, "tenant")
	require.NoError(t, err)
	out := fleet.Sets{}
	for k, v := range w.Sets {
		out[k] = v
	}
	out[migrations.SetTenant] = set
	return out
}

func TestBrokenTenantDoesNotStopOthersAndRerunResumes(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "fleet")
	primary := w.AddRegion(t, "eu-west-1")
	provision(t, w, "eu-west-1", "t1", "t2", "t3", "t4", "t5")

	w.Fleet.Sets = extended(t, w, "CREATE TABLE projects (id uuid PRIMARY KEY, name text NOT NULL);", "DROP TABLE projects;")
	regional := w.Connect(t, primary, "")
	// t3 already holds a table of that name, so projectsFile fails there.
	_, err := regional.Exec(ctx, `CREATE TABLE t_t3.projects (x int)`)
	require.NoError(t, err)

	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants, Concurrency: 3, BatchSize: 2})
	require.ErrorIs(t, err, fleet.ErrTargetsFailed)
	assert.Equal(t, 5, run.Total)
	assert.Equal(t, 1, run.Failed)
	assert.Equal(t, 4, run.Succeeded)
	for _, r := range run.Results {
		if r.Target == "tenant:t3" {
			assert.Equal(t, "failed", r.Status)
			assert.Contains(t, r.Error, projectsFile)
		} else {
			assert.Equal(t, "succeeded", r.Status, r.Target)
		}
	}
	var status, recordedErr string
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT r.status, e.error FROM admin.migration_runs r
		JOIN admin.migration_results e ON e.run_id = r.id AND e.target = 'tenant:t3' WHERE r.id = $1`, run.ID).Scan(&status, &recordedErr))
	assert.Equal(t, "failed", status)
	assert.Contains(t, recordedErr, "already exists")

	_, err = regional.Exec(ctx, `DROP TABLE t_t3.projects`)
	require.NoError(t, err)
	rerun, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants})
	require.NoError(t, err)
	applied := map[string][]string{}
	for _, r := range rerun.Results {
		applied[r.Target] = r.Applied
	}
	assert.Equal(t, map[string][]string{"tenant:t1": nil, "tenant:t2": nil, "tenant:t3": {projectsFile}, "tenant:t4": nil, "tenant:t5": nil}, applied,
		"the rerun resumes: only the failed tenant has work left")
}

func TestDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "fleet")
	primary := w.AddRegion(t, "us-east-1")
	provision(t, w, "us-east-1", "acme")
	w.Fleet.Sets = extended(t, w, "CREATE TABLE projects (id uuid PRIMARY KEY);", "DROP TABLE projects;")

	run, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants, DryRun: true})
	require.NoError(t, err)
	require.Len(t, run.Results, 1)
	assert.Equal(t, []string{projectsFile}, run.Results[0].Pending)
	assert.Empty(t, run.Results[0].Applied)

	var exists bool
	require.NoError(t, w.Connect(t, primary, "").QueryRow(ctx, `SELECT to_regclass('t_acme.projects') IS NOT NULL`).Scan(&exists))
	assert.False(t, exists, "a dry run must not create anything")
}

func TestRollbackAndReapply(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "fleet")
	primary := w.AddRegion(t, "us-east-1")
	provision(t, w, "us-east-1", "acme")
	w.Fleet.Sets = extended(t, w, "CREATE TABLE projects (id uuid PRIMARY KEY);", "DROP TABLE projects;")
	_, err := w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants})
	require.NoError(t, err)
	db := w.Connect(t, primary, "")
	exists := func() bool {
		var ok bool
		require.NoError(t, db.QueryRow(ctx, `SELECT to_regclass('t_acme.projects') IS NOT NULL`).Scan(&ok))
		return ok
	}
	require.True(t, exists())

	run, err := w.Fleet.Rollback(ctx, fleet.Plan{Scope: fleet.ScopeTenants, Tenant: "acme", To: projectsPrev})
	require.NoError(t, err)
	require.Len(t, run.Results, 1)
	assert.Equal(t, projectsNext, run.Results[0].From)
	assert.Equal(t, projectsPrev, run.Results[0].To)
	assert.False(t, exists(), "the undo file ran")

	_, err = w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants})
	require.NoError(t, err)
	assert.True(t, exists(), "apply after rollback re-applies")

	_, err = w.Fleet.Rollback(ctx, fleet.Plan{Scope: fleet.ScopeTenants, To: "1"})
	require.ErrorIs(t, err, fleet.ErrTargetsFailed, "V2 has no undo file, so rolling back past it fails")
	assert.True(t, exists(), "nothing is undone when an undo file is missing")
}

func TestConcurrentRunnersApplyOnce(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "fleet")
	primary := w.AddRegion(t, "us-east-1")
	provision(t, w, "us-east-1", "a", "b", "c")
	w.Fleet.Sets = extended(t, w, "CREATE TABLE projects (id uuid PRIMARY KEY);", "DROP TABLE projects;")

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = w.Fleet.Apply(ctx, fleet.Plan{Scope: fleet.ScopeTenants, Concurrency: 2})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	rows, err := w.Connect(t, primary, "").Query(ctx, `SELECT count(*) FROM t_a.flyway_schema_history WHERE version = '4'
		UNION ALL SELECT count(*) FROM t_b.flyway_schema_history WHERE version = '4'
		UNION ALL SELECT count(*) FROM t_c.flyway_schema_history WHERE version = '4'`)
	require.NoError(t, err)
	counts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	assert.Equal(t, []int64{1, 1, 1}, counts, "each version is applied exactly once")
}

func TestInvalidScope(t *testing.T) {
	w := testenv.New(t, "fleet")
	_, err := w.Fleet.Apply(context.Background(), fleet.Plan{Scope: "everything"})
	require.ErrorIs(t, err, fleet.ErrInvalidScope)
	_, err = w.Fleet.Apply(context.Background(), fleet.Plan{Scope: fleet.ScopeTenants, Tenant: "Bad;Slug"})
	require.Error(t, err)
	_, err = w.Fleet.Apply(context.Background(), fleet.Plan{Scope: fleet.ScopeTenants, Tenant: "missing"})
	require.ErrorIs(t, err, registry.ErrNotFound)
}
