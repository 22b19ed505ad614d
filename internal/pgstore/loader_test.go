package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// world is a generated tenant's RBAC data as Go values: what is inserted into the database
// and what the expected decision.Input is built from, without the loader's SQL.
type world struct {
	schema string
	teams  []team
	roles  []decision.Role
	users  []user
}

type team struct{ id, slug, parent string }

type user struct {
	id, ext, status string
	memberOf        []string
	assignments     []decision.Assignment
	direct          []decision.DirectPermission
}

var (
	genResources = []string{"documents", "projects", "reports"}
	genActions   = []string{"read", "update", "delete"}
	genScopes    = []string{"own", "team", "tenant", "*"}
)

// genCodes are the stored codes roles and direct permissions pick from: concrete codes, a
// wildcard scope on each, and a few wildcard resources and actions.
func genCodes() []string {
	var codes []string
	for _, r := range genResources {
		for _, a := range genActions {
			for _, s := range genScopes {
				codes = append(codes, r+"."+a+"."+s)
			}
		}
		codes = append(codes, r+".*.team", r+".*.*")
	}
	return append(codes, "*.read.*", "*.read.team", "*.*.own", "*.*.*")
}

// generate builds teams nested three levels deep, ten roles with inheritance (a cycle g0 → g1
// → g2 → g0, and a chain g3 → g4 → g5 → g6 through the inactive g4), and users with
// memberships, team-restricted and expiring assignments, and direct grants and denies.
func generate(schema string, seed uint64, nUsers int, now time.Time) *world {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	w := &world{schema: schema}
	for i := range 3 {
		root := team{id: newUUID(), slug: fmt.Sprintf("root-%d", i)}
		w.teams = append(w.teams, root)
		for j := range 2 {
			mid := team{id: newUUID(), slug: fmt.Sprintf("mid-%d-%d", i, j), parent: root.id}
			w.teams = append(w.teams, mid)
			for k := range 2 {
				w.teams = append(w.teams, team{id: newUUID(), slug: fmt.Sprintf("leaf-%d-%d-%d", i, j, k), parent: mid.id})
			}
		}
	}
	codes := genCodes()
	for i := range 10 {
		r := decision.Role{ID: newUUID(), Code: fmt.Sprintf("g%d", i), Active: i != 4 && i != 9}
		for range 1 + rng.IntN(4) {
			if c := codes[rng.IntN(len(codes))]; !slices.Contains(r.Permissions, c) {
				r.Permissions = append(r.Permissions, c)
			}
		}
		w.roles = append(w.roles, r)
	}
	for _, e := range [][2]int{{0, 1}, {1, 2}, {2, 0}, {3, 4}, {4, 5}, {5, 6}, {7, 3}, {8, 6}, {1, 7}, {9, 0}} {
		w.roles[e[0]].Inherits = append(w.roles[e[0]].Inherits, w.roles[e[1]].ID)
	}
	expiry := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return now.Add(-time.Hour).Truncate(time.Microsecond).UTC()
		case 1:
			return now.Add(time.Hour).Truncate(time.Microsecond).UTC()
		}
		return time.Time{}
	}
	group := func() string {
		if rng.IntN(3) == 0 {
			return w.teams[rng.IntN(len(w.teams))].id
		}
		return ""
	}
	for i := range nUsers {
		u := user{id: newUUID(), ext: fmt.Sprintf("user-%d", i), status: "active"}
		switch i % 10 {
		case 7:
			u.status = "inactive"
		case 8:
			if i%20 == 8 {
				u.status = "suspended"
			}
		}
		for range rng.IntN(3) {
			if t := w.teams[rng.IntN(len(w.teams))].id; !slices.Contains(u.memberOf, t) {
				u.memberOf = append(u.memberOf, t)
			}
		}
		for range rng.IntN(4) {
			a := decision.Assignment{RoleID: w.roles[rng.IntN(len(w.roles))].ID, Group: group(), ExpiresAt: expiry()}
			if !slices.ContainsFunc(u.assignments, func(b decision.Assignment) bool { return b.RoleID == a.RoleID && b.Group == a.Group }) {
				u.assignments = append(u.assignments, a)
			}
		}
		for range rng.IntN(4) {
			d := decision.DirectPermission{Code: codes[rng.IntN(len(codes))], Granted: rng.IntN(5) < 3, Group: group(), ExpiresAt: expiry()}
			if !slices.ContainsFunc(u.direct, func(b decision.DirectPermission) bool { return b.Code == d.Code && b.Group == d.Group }) {
				u.direct = append(u.direct, d)
			}
		}
		w.users = append(w.users, u)
	}
	return w
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// insert writes the world into its tenant schema in one transaction.
func (w *world) insert(tb testing.TB, db *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	require.NoError(tb, err)
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	q := func(name string) string { return table(w.schema, name) }
	exec := func(sql string, args ...any) {
		tb.Helper()
		_, err := tx.Exec(ctx, sql, args...)
		require.NoError(tb, err, sql)
	}
	for _, c := range genCodes() {
		exec(`INSERT INTO `+q("permissions")+` (code) VALUES ($1) ON CONFLICT (code) DO NOTHING`, c)
	}
	for _, t := range w.teams {
		exec(`INSERT INTO `+q("teams")+` (id, slug, name, parent_team_id) VALUES ($1, $2, $2, $3)`, t.id, t.slug, nullable(t.parent))
	}
	for _, r := range w.roles {
		exec(`INSERT INTO `+q("roles")+` (id, code, name, is_active) VALUES ($1, $2, $2, $3)`, r.ID, r.Code, r.Active)
		for _, c := range r.Permissions {
			exec(`INSERT INTO `+q("role_permissions")+` (role_id, permission_id) SELECT $1, id FROM `+q("permissions")+` WHERE code = $2`, r.ID, c)
		}
	}
	for _, r := range w.roles {
		for _, i := range r.Inherits {
			exec(`INSERT INTO `+q("role_inherits")+` (role_id, inherited_role_id) VALUES ($1, $2)`, r.ID, i)
		}
	}
	for _, u := range w.users {
		exec(`INSERT INTO `+q("users")+` (id, external_id, status) VALUES ($1, $2, $3)`, u.id, u.ext, u.status)
		for _, t := range u.memberOf {
			exec(`INSERT INTO `+q("team_members")+` (team_id, user_id) VALUES ($1, $2)`, t, u.id)
		}
		for _, a := range u.assignments {
			exec(`INSERT INTO `+q("user_roles")+` (user_id, role_id, team_id, expires_at) VALUES ($1, $2, $3, $4)`,
				u.id, a.RoleID, nullable(a.Group), nullTime(a.ExpiresAt))
		}
		for _, d := range u.direct {
			exec(`INSERT INTO `+q("user_permissions")+` (user_id, permission_id, team_id, is_granted, expires_at)
				SELECT $1, id, $3, $4, $5 FROM `+q("permissions")+` WHERE code = $2`,
				u.id, d.Code, nullable(d.Group), d.Granted, nullTime(d.ExpiresAt))
		}
	}
	require.NoError(tb, tx.Commit(ctx))
}

// descendants is the whole team forest as parent → children.
func (w *world) descendants() map[string][]string {
	m := map[string][]string{}
	for _, t := range w.teams {
		if t.parent != "" {
			m[t.parent] = append(m[t.parent], t.id)
		}
	}
	return m
}

// expected is the Input the engine should get for u: every row as stored, every role of the
// tenant (the engine walks the closure itself) and the whole team forest.
func (w *world) expected(t pgstore.Tenant, u user, version uint64) decision.Input {
	return decision.Input{
		Level: decision.LevelTenant, TenantID: t.ID, TenantKnown: true, TenantStatus: t.Status,
		UserKnown: true, UserID: u.ext, UserStatus: u.status, Version: version,
		Roles: w.roles, Assignments: u.assignments, Direct: u.direct,
		MemberOf: u.memberOf, Descendants: w.descendants(),
	}
}

// loadedShape is what the loader must return for u at now, by the loader rules: unexpired
// items only, and exactly the roles reachable from them through role_inherits (inactive ones
// included).
func (w *world) loadedShape(t pgstore.Tenant, u user, version uint64, now time.Time) decision.Input {
	in := w.expected(t, u, version)
	valid := func(e time.Time) bool { return e.IsZero() || e.After(now) }
	in.Assignments, in.Direct = nil, nil
	for _, a := range u.assignments {
		if valid(a.ExpiresAt) {
			in.Assignments = append(in.Assignments, a)
		}
	}
	for _, d := range u.direct {
		if valid(d.ExpiresAt) {
			in.Direct = append(in.Direct, d)
		}
	}
	byID := map[string]decision.Role{}
	for _, r := range w.roles {
		byID[r.ID] = r
	}
	seen := map[string]bool{}
	var queue []string
	for _, a := range in.Assignments {
		queue = append(queue, a.RoleID)
	}
	in.Roles = nil
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		in.Roles = append(in.Roles, byID[id])
		queue = append(queue, byID[id].Inherits...)
	}
	return in
}

// requests covers every code check on the generated resources (plus one nobody grants) and
// every resource check over every team, no team, and three owners.
func requests(userExt string, teams []team) []decision.Request {
	var reqs []decision.Request
	resources := append(slices.Clone(genResources), "billing")
	actions := append(slices.Clone(genActions), "create")
	for _, r := range resources {
		for _, a := range actions {
			for _, s := range []string{"own", "team", "tenant"} {
				reqs = append(reqs, decision.Request{Permission: r + "." + a + "." + s})
			}
			groups := []string{""}
			for _, t := range teams {
				groups = append(groups, t.id)
			}
			for _, g := range groups {
				for _, owner := range []string{userExt, "someone-else", ""} {
					reqs = append(reqs, decision.Request{Permission: r + "." + a, HasResource: true,
						Resource: decision.Resource{OwnerID: owner, Group: g}})
				}
			}
		}
	}
	return reqs
}

func TestLoadTenantUserMatchesEngineExpectation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	for i, seed := range []uint64{1, 2} {
		tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: fmt.Sprintf("gen-%d", i), Realm: fmt.Sprintf("gen-%d", i)})
		now := time.Now()
		w := generate(tn.SchemaName, seed, 40, now)
		w.insert(t, db)
		version := stateVersion(t, db, tn.SchemaName)

		var allowed, denied int
		for _, u := range w.users {
			got, err := e.store.LoadTenantUser(ctx, tn, u.ext)
			require.NoError(t, err)
			require.Equal(t, version, got.Version, "%s: version: got %d, want %d", u.ext, got.Version, version)

			// Structure: the rows, by the loader rules.
			shape := normalize(w.loadedShape(tn, u, version, now))
			assert.Equal(t, shape, normalize(got), "%s: loaded input", u.ext)

			// Teams: every group the engine will close over has the same closure as in the forest.
			full := w.descendants()
			seeds := slices.Clone(u.memberOf)
			for _, a := range shape.Assignments {
				seeds = append(seeds, a.Group)
			}
			for _, d := range shape.Direct {
				seeds = append(seeds, d.Group)
			}
			for _, g := range seeds {
				if g != "" {
					assert.Equal(t, closureOf(full, g), closureOf(got.Descendants, g), "%s: descendants of %s", u.ext, g)
				}
			}

			// Decisions: the loaded facts decide exactly as the facts built in Go.
			checkAt := time.Now()
			sameDecisions(t, u.ext, got, w.expected(tn, u, version), checkAt, requests(u.ext, w.teams))
			set, err := decision.Compile(got, checkAt)
			require.NoError(t, err)
			for _, req := range requests(u.ext, w.teams) {
				d, err := set.Check(checkAt, req)
				require.NoError(t, err)
				if d.Allowed {
					allowed++
				} else if d.Reason == decision.ReasonExplicitDeny {
					denied++
				}
			}
		}
		// The generated data must exercise both outcomes, or the comparison proves little.
		assert.Positive(t, allowed, "allowed decisions")
		assert.Positive(t, denied, "explicit denies")
	}
}

func TestLoadTenantUserVersion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "ver", Realm: "ver"})
	_, err := db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) VALUES ('alice')`)
	require.NoError(t, err)

	in, err := e.store.LoadTenantUser(ctx, tn, "alice")
	require.NoError(t, err)
	before := stateVersion(t, db, tn.SchemaName)
	assert.Equal(t, before, in.Version)
	v, err := e.store.TenantVersion(ctx, tn)
	require.NoError(t, err)
	assert.Equal(t, before, v)
	set, err := decision.Compile(in, time.Now())
	require.NoError(t, err)
	d, err := set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
	require.NoError(t, err)
	assert.Equal(t, decision.ReasonNoPermission, d.Reason)

	_, err = db.Exec(ctx, `INSERT INTO `+table(tn.SchemaName, "user_permissions")+` (user_id, permission_id)
		SELECT u.id, p.id FROM `+table(tn.SchemaName, "users")+` u, `+table(tn.SchemaName, "permissions")+` p
		 WHERE u.external_id = 'alice' AND p.code = 'documents.read.own'`)
	require.NoError(t, err)
	in, err = e.store.LoadTenantUser(ctx, tn, "alice")
	require.NoError(t, err)
	after := stateVersion(t, db, tn.SchemaName)
	assert.Greater(t, after, before)
	assert.Equal(t, after, in.Version)
	set, err = decision.Compile(in, time.Now())
	require.NoError(t, err)
	d, err = set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
	require.NoError(t, err)
	assert.True(t, d.Allowed, "got %v, want granted after the change", d.Reason)
	assert.Equal(t, after, d.Version)
}

func TestLoadTenantUserUnknownUser(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "nobody", Realm: "nobody"})
	in, err := e.store.LoadTenantUser(ctx, tn, "ghost")
	require.NoError(t, err)
	want := decision.Input{Level: decision.LevelTenant, TenantID: tn.ID, TenantKnown: true, TenantStatus: "active",
		UserID: "ghost", Version: stateVersion(t, db, tn.SchemaName)}
	assert.Equal(t, want, in)
	set, err := decision.Compile(in, time.Now())
	require.NoError(t, err)
	d, err := set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
	require.NoError(t, err)
	assert.Equal(t, decision.ReasonUnknownUser, d.Reason)
}

func TestLoadTenantUserStatusPassedThrough(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "paused", Realm: "paused"})
	_, err := e.w.Tenants.Suspend(ctx, tn.ID)
	require.NoError(t, err)
	tn, err = e.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	in, err := e.store.LoadTenantUser(ctx, tn, "anyone")
	require.NoError(t, err)
	assert.Equal(t, "suspended", in.TenantStatus)
	set, err := decision.Compile(in, time.Now())
	require.NoError(t, err)
	d, err := set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
	require.NoError(t, err)
	assert.Equal(t, decision.ReasonTenantSuspended, d.Reason)
}

func TestLoadTenantUserErrorsAreErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "errs", Realm: "errs"})

	missing := tn
	missing.SchemaName = "t_does_not_exist"
	in, err := e.store.LoadTenantUser(ctx, missing, "alice")
	require.Error(t, err, "a schema that does not exist")
	assert.Equal(t, decision.Input{}, in)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = e.store.LoadTenantUser(canceled, tn, "alice")
	require.Error(t, err, "a canceled context")

	unplaced := tn
	unplaced.ConnectionID = ""
	_, err = e.store.LoadTenantUser(ctx, unplaced, "alice")
	require.Error(t, err, "a tenant without a connection")

	// Another tenant's schema: the authz_state stamp refuses to hand out its grants.
	other, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "errs-other", Realm: "errs-other"})
	crossed := tn
	crossed.SchemaName = other.SchemaName
	_, err = e.store.LoadTenantUser(ctx, crossed, "alice")
	require.ErrorContains(t, err, "belongs to tenant "+other.ID)
}

func TestHostileSchemaNameIsRefused(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: "victim", Realm: "victim"})
	for _, name := range []string{
		tn.SchemaName + `.users; DROP SCHEMA ` + tn.SchemaName + ` CASCADE; --`,
		`t_x" CASCADE; --`,
		"T_Upper",
		"pg_catalog",
		"",
		"1abc",
		"a234567890123456789012345678901234567890123456789012345678901234",
	} {
		hostile := tn
		hostile.SchemaName = name
		_, err := e.store.LoadTenantUser(ctx, hostile, "alice")
		require.ErrorIs(t, err, pgstore.ErrInvalidSchemaName, "load %q", name)
		_, err = e.store.TenantVersion(ctx, hostile)
		require.ErrorIs(t, err, pgstore.ErrInvalidSchemaName, "version %q", name)
		_, err = e.store.Catalog(ctx, hostile)
		require.ErrorIs(t, err, pgstore.ErrInvalidSchemaName, "catalog %q", name)
	}
	var exists bool
	require.NoError(t, db.QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, tn.SchemaName).Scan(&exists))
	assert.True(t, exists, "the victim schema survives")
}

func TestLoadTenantUserDatabaseDeployment(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	slug := unique("db-")
	t.Cleanup(func() { pgtest.Drop(t, e.w.Server(), tenancy.DatabaseName(slug)) })
	tn, db := e.createTenant(t, tenancy.CreateRequest{Slug: slug, Realm: slug, Deployment: tenancy.DeployDatabase})
	assert.Equal(t, tenancy.DatabaseName(slug), tn.Database)
	assert.Equal(t, e.primary.ID, tn.ConnectionID)

	_, err := db.Exec(ctx, `WITH u AS (INSERT INTO `+table(tn.SchemaName, "users")+` (external_id) VALUES ('dora') RETURNING id)
		INSERT INTO `+table(tn.SchemaName, "user_roles")+` (user_id, role_id)
		SELECT u.id, r.id FROM u, `+table(tn.SchemaName, "roles")+` r WHERE r.code = 'viewer'`)
	require.NoError(t, err)
	in, err := e.store.LoadTenantUser(ctx, tn, "dora")
	require.NoError(t, err)
	assert.True(t, in.UserKnown)
	assert.Equal(t, stateVersion(t, db, tn.SchemaName), in.Version)
	var codes []string
	for _, r := range in.Roles {
		codes = append(codes, r.Code)
	}
	slices.Sort(codes)
	assert.Equal(t, []string{"guest", "viewer"}, codes, "viewer and what it inherits")
	set, err := decision.Compile(in, time.Now())
	require.NoError(t, err)
	d, err := set.Check(time.Now(), decision.Request{Permission: "documents.read.own"})
	require.NoError(t, err)
	assert.True(t, d.Allowed, "got %v, want granted through guest", d.Reason)

	versions, err := e.store.DatabaseVersions(ctx, e.primary.ID, tn.Database)
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{tn.ID: in.Version}, versions)
	versions, err = e.store.DatabaseVersions(ctx, e.primary.ID, "")
	require.NoError(t, err)
	assert.Empty(t, versions, "the connection's own database holds no tenant")
}

func TestLoadPlatformUser(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgstore.Options{})
	a, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "plat-a", Realm: "plat-a"})
	b, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "plat-b", Realm: "plat-b"})

	tx, err := e.w.Admin.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var ids struct{ user, ops, base, cyc, off string }
	require.NoError(t, tx.QueryRow(ctx, `INSERT INTO admin.platform_users (external_id) VALUES ('pat') RETURNING id::text`).Scan(&ids.user))
	for _, c := range []string{"tenants.read.*", "tenants.update.tenant", "rbac.*.tenant", "audit.read.platform", "rbac.delete.tenant", "regions.read.platform"} {
		_, err := tx.Exec(ctx, `INSERT INTO admin.platform_permissions (code) VALUES ($1) ON CONFLICT (code) DO NOTHING`, c)
		require.NoError(t, err)
	}
	role := func(code string, active bool, perms ...string) string {
		var id string
		require.NoError(t, tx.QueryRow(ctx, `INSERT INTO admin.platform_roles (code, name, is_active) VALUES ($1, $1, $2) RETURNING id::text`, code, active).Scan(&id))
		for _, p := range perms {
			_, err := tx.Exec(ctx, `INSERT INTO admin.platform_role_permissions (role_id, permission_id) SELECT $1, id FROM admin.platform_permissions WHERE code = $2`, id, p)
			require.NoError(t, err)
		}
		return id
	}
	ids.ops = role("p_ops", true, "tenants.update.tenant", "rbac.*.tenant")
	ids.base = role("p_base", true, "tenants.read.*")
	ids.cyc = role("p_cycle", true)
	ids.off = role("p_off", false, "regions.read.platform")
	for _, edge := range [][2]string{{ids.ops, ids.base}, {ids.base, ids.cyc}, {ids.cyc, ids.ops}, {ids.ops, ids.off}} {
		_, err := tx.Exec(ctx, `INSERT INTO admin.platform_role_inherits (role_id, inherited_role_id) VALUES ($1, $2)`, edge[0], edge[1])
		require.NoError(t, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO admin.platform_user_roles (user_id, role_id, tenant_id) VALUES ($1, $2, $3)`, ids.user, ids.ops, a.ID)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO admin.platform_user_roles (user_id, role_id, expires_at) VALUES ($1, $2, now() - interval '1 hour')`, ids.user, ids.base)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO admin.platform_user_permissions (user_id, permission_id, tenant_id, is_granted)
		SELECT $1, id, $2, false FROM admin.platform_permissions WHERE code = 'rbac.delete.tenant'`, ids.user, a.ID)
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()
	_, err = tx.Exec(ctx, `INSERT INTO admin.platform_user_permissions (user_id, permission_id, expires_at)
		SELECT $1, id, $2 FROM admin.platform_permissions WHERE code = 'audit.read.platform'`, ids.user, exp)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	got, err := e.store.LoadPlatformUser(ctx, "pat")
	require.NoError(t, err)
	adminVersion, err := e.store.AdminVersion(ctx)
	require.NoError(t, err)
	var direct uint64
	require.NoError(t, e.w.Admin.QueryRow(ctx, `SELECT version FROM admin.authz_state`).Scan(&direct))
	assert.Equal(t, direct, adminVersion)
	assert.Equal(t, direct, got.Version)

	roles := []decision.Role{
		{ID: ids.ops, Code: "p_ops", Active: true, Permissions: []string{"rbac.*.tenant", "tenants.update.tenant"}, Inherits: []string{ids.base, ids.off}},
		{ID: ids.base, Code: "p_base", Active: true, Permissions: []string{"tenants.read.*"}, Inherits: []string{ids.cyc}},
		{ID: ids.cyc, Code: "p_cycle", Active: true, Inherits: []string{ids.ops}},
		{ID: ids.off, Code: "p_off", Active: false, Permissions: []string{"regions.read.platform"}},
	}
	want := decision.Input{
		Level: decision.LevelPlatform, UserKnown: true, UserID: "pat", UserStatus: "active", Version: direct,
		Roles:       roles,
		Assignments: []decision.Assignment{{RoleID: ids.ops, Group: a.ID}},
		Direct: []decision.DirectPermission{
			{Code: "rbac.delete.tenant", Granted: false, Group: a.ID},
			{Code: "audit.read.platform", Granted: true, ExpiresAt: exp},
		},
	}
	assert.Equal(t, normalize(want), normalize(got))
	assert.Nil(t, got.MemberOf)
	assert.Nil(t, got.Descendants)

	now := time.Now()
	var reqs []decision.Request
	for _, r := range []string{"tenants", "rbac", "audit", "regions"} {
		for _, act := range []string{"read", "update", "delete"} {
			for _, s := range []string{"user", "tenant", "platform"} {
				reqs = append(reqs, decision.Request{Permission: r + "." + act + "." + s})
			}
			for _, g := range []string{a.ID, b.ID, ""} {
				reqs = append(reqs, decision.Request{Permission: r + "." + act, HasResource: true, Resource: decision.Resource{OwnerID: "x", Group: g}})
			}
		}
	}
	sameDecisions(t, "pat", got, want, now, reqs)

	set, err := decision.Compile(got, now)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		req    decision.Request
		reason decision.Reason
	}{
		{"restricted grant reaches its tenant", decision.Request{Permission: "tenants.update", HasResource: true, Resource: decision.Resource{Group: a.ID}}, decision.ReasonGranted},
		{"restricted grant does not reach another tenant", decision.Request{Permission: "tenants.update", HasResource: true, Resource: decision.Resource{Group: b.ID}}, decision.ReasonNoPermission},
		{"inherited through the assignment", decision.Request{Permission: "tenants.read", HasResource: true, Resource: decision.Resource{Group: a.ID}}, decision.ReasonGranted},
		{"restricted caps at tenant scope", decision.Request{Permission: "tenants.update.platform"}, decision.ReasonNoPermission},
		{"restricted deny", decision.Request{Permission: "rbac.delete", HasResource: true, Resource: decision.Resource{Group: a.ID}}, decision.ReasonExplicitDeny},
		{"inactive role cut", decision.Request{Permission: "regions.read.platform"}, decision.ReasonNoPermission},
		{"direct grant", decision.Request{Permission: "audit.read.platform"}, decision.ReasonGranted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := set.Check(now, tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.reason, d.Reason, "got %v, want %v", d.Reason, tc.reason)
		})
	}

	unknown, err := e.store.LoadPlatformUser(ctx, "nobody")
	require.NoError(t, err)
	assert.Equal(t, decision.Input{Level: decision.LevelPlatform, UserID: "nobody", Version: direct}, unknown)
}
