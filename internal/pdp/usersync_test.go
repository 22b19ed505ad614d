package pdp_test

import (
	"context"
	"encoding/json"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/pdp"
)

// setUserSync turns user sync on for acme with the given default roles, as the admin API does
// (the admin copy the pdp reads and the schema copy sync_user reads), and waits until the
// instances have heard of the directory change.
func (f *fixture) setUserSync(t testing.TB, enabled bool, roles []string, ins ...*instance) {
	t.Helper()
	v, err := json.Marshal(map[string]any{"enabled": enabled, "default_roles": roles})
	require.NoError(t, err)
	f.exec(t, `INSERT INTO t_acme.settings (key, value) VALUES ('user_sync', $1::jsonb)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, string(v))
	tok := f.adminWrite(t, `UPDATE admin.tenants SET settings = settings || jsonb_build_object('user_sync', '`+string(v)+`'::jsonb) WHERE slug = 'acme'`)
	for _, in := range ins {
		require.Eventually(t, func() bool { return in.floors.DirFloor(f.tenant.ID) >= tok.Admin }, 10*time.Second, time.Millisecond,
			"the directory change never arrived")
	}
}

// tokenSubject is the subject a verified token of acme's realm gives (what SubjectFromToken
// returns).
func (f *fixture) tokenSubject(sub, email, username string) pdp.Subject {
	return pdp.Subject{Level: authn.LevelTenant, TenantID: f.tenant.ID, TenantSlug: "acme", UserID: sub,
		Identity: authn.Identity{Level: authn.LevelTenant, TenantID: f.tenant.ID, TenantSlug: "acme", Realm: "acme",
			Subject: sub, Email: email, PreferredUsername: username}}
}

// syncs reads user_sync_total{result}.
func (in *instance) syncs(t testing.TB, result string) float64 {
	t.Helper()
	return metrictest.Sum(t, in.reg, "user_sync_total", map[string]string{"result": result})
}

func (in *instance) checkSub(t testing.TB, sub pdp.Subject, perm string) pdp.Result {
	t.Helper()
	res, err := in.svc.Check(context.Background(), sub, pdp.Request{Permission: perm})
	require.NoError(t, err)
	return res
}

// userRow is what acme's users table holds for sub: whether it exists, its profile and roles.
type userRow struct {
	exists              bool
	email, display      *string
	roles               []string
	syncCreates, update int
}

func (f *fixture) userRow(t testing.TB, sub string) userRow {
	t.Helper()
	var r userRow
	err := f.db.QueryRow(context.Background(), `SELECT count(*) > 0, max(email), max(display_name),
		coalesce((SELECT array_agg(r.code ORDER BY r.code) FROM t_acme.user_roles ur JOIN t_acme.roles r ON r.id = ur.role_id
		           JOIN t_acme.users u2 ON u2.id = ur.user_id WHERE u2.external_id = $1 AND ur.granted_by = 'system:user-sync'), '{}'),
		(SELECT count(*) FROM t_acme.audit_outbox o WHERE o.action = 'tenant_user.sync_create' AND o.after->>'external_id' = $1),
		(SELECT count(*) FROM t_acme.audit_outbox o JOIN t_acme.users u3 ON u3.id::text = o.target_id
		  WHERE o.action = 'tenant_user.sync_update' AND u3.external_id = $1)
		FROM t_acme.users WHERE external_id = $1`, sub).Scan(&r.exists, &r.email, &r.display, &r.roles, &r.syncCreates, &r.update)
	require.NoError(t, err)
	return r
}

func TestUserSyncCreatesUserOnFirstToken(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	carol := f.tokenSubject("carol", "carol@example.com", "carol")

	// Off (the default): unknown user, as before, and nothing is written. The unknown-user
	// answer is now cached.
	res := in.checkSub(t, carol, "documents.read.own")
	assert.Equal(t, pdp.ReasonUnknownUser, res.Reason, "got %s, want unknown_user with sync off", res.Reason)
	assert.Empty(t, res.Detail)
	assert.False(t, f.userRow(t, "carol").exists, "sync off wrote a user")

	f.setUserSync(t, true, []string{"member"}, in)
	before := f.version(t)
	res = in.checkSub(t, carol, "documents.read.own")
	assert.True(t, res.Allowed, "got %s, want granted through the default role member", res.Reason)
	assert.Equal(t, pdp.ReasonGranted, res.Reason)
	assert.Greater(t, res.Version, before, "the decision must be made at the write's version or later")
	row := f.userRow(t, "carol")
	require.True(t, row.exists)
	assert.Equal(t, "carol@example.com", *row.email)
	assert.Equal(t, "carol", *row.display)
	assert.Equal(t, []string{"member"}, row.roles, "got roles %v", row.roles)
	assert.Equal(t, 1, row.syncCreates, "got %d sync_create audit rows, want 1", row.syncCreates)
	// What member does not hold stays denied.
	assert.Equal(t, pdp.ReasonNoPermission, in.checkSub(t, carol, "users.delete.tenant").Reason)
	assert.InDelta(t, 1, in.syncs(t, "created"), 0)
}

func TestUserSyncWithoutDefaultRolesIsNoPermission(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, nil, in)
	res := in.checkSub(t, f.tokenSubject("dave", "", ""), "documents.read.own")
	assert.Equal(t, pdp.ReasonNoPermission, res.Reason, "got %s, want no_permission (the user exists now, with no role)", res.Reason)
	row := f.userRow(t, "dave")
	assert.True(t, row.exists)
	assert.Empty(t, row.roles)
	assert.Nil(t, row.email)
}

func TestUserSyncOnlyForTheTenantsOwnTokens(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, []string{"member"}, in)

	otherRealm := f.tokenSubject("erin", "erin@example.com", "erin")
	otherRealm.Identity.Realm = "globex"
	otherTenant := f.tokenSubject("erin", "erin@example.com", "erin")
	otherTenant.Identity.TenantID = "00000000-0000-0000-0000-000000000001"
	platformToken := f.tokenSubject("erin", "erin@example.com", "erin")
	platformToken.Identity.Level = authn.LevelPlatform
	principal, err := in.svc.SubjectFromPrincipal(context.Background(), "acme", "erin")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		sub  pdp.Subject
	}{
		{"token of another realm", otherRealm},
		{"token of another tenant", otherTenant},
		{"platform token", platformToken},
		{"principal (no token)", principal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := in.checkSub(t, tc.sub, "documents.read.own")
			assert.Equal(t, pdp.ReasonUnknownUser, res.Reason, "got %s, want unknown_user", res.Reason)
			assert.False(t, f.userRow(t, "erin").exists, "a user was created")
		})
	}
	// The platform level never reaches a tenant's users.
	plat := pdp.Subject{Level: authn.LevelPlatform, UserID: "erin", Identity: authn.Identity{Level: authn.LevelPlatform, Realm: "platform", Subject: "erin"}}
	res, err := in.svc.Check(context.Background(), plat, pdp.Request{Permission: "tenants.read.platform"})
	require.NoError(t, err)
	assert.Equal(t, pdp.ReasonUnknownUser, res.Reason)
	assert.False(t, f.userRow(t, "erin").exists)
}

func TestUserSyncNeverForSuspendedTenant(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, []string{"member"}, in)
	_, err := f.w.Tenants.Suspend(context.Background(), "acme")
	require.NoError(t, err)
	var admin int64
	require.NoError(t, f.w.Admin.QueryRow(context.Background(), `SELECT version FROM admin.authz_state`).Scan(&admin))
	require.Eventually(t, func() bool { return in.floors.DirFloor(f.tenant.ID) >= uint64(admin) }, 10*time.Second, time.Millisecond)
	res := in.checkSub(t, f.tokenSubject("frank", "", ""), "documents.read.own")
	assert.Equal(t, pdp.ReasonTenantSuspended, res.Reason)
	assert.False(t, f.userRow(t, "frank").exists, "a suspended tenant got a user")
}

func TestUserSyncSchemaSettingIsTheAuthority(t *testing.T) {
	// The admin copy says on, the schema's copy (which sync_user reads) is absent: nothing is
	// written, the deny stays unknown user.
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, []string{"owner"}, in)
	f.exec(t, `DELETE FROM t_acme.settings WHERE key = 'user_sync'`)
	res := in.checkSub(t, f.tokenSubject("gina", "", ""), "documents.read.own")
	assert.Equal(t, pdp.ReasonUnknownUser, res.Reason)
	assert.False(t, f.userRow(t, "gina").exists)
	assert.InDelta(t, 1, in.syncs(t, "disabled"), 0)
}

func TestUserSyncRateLimitedPerTenant(t *testing.T) {
	f := newFixture(t)
	// A burst of two and (practically) no refill.
	in := f.start(t, pdp.Config{UserSync: pdp.UserSyncConfig{Rate: 1e-9, Burst: 2}}, nil)
	f.setUserSync(t, true, []string{"member"}, in)
	for _, u := range []string{"u1", "u2"} {
		assert.Equal(t, pdp.ReasonGranted, in.checkSub(t, f.tokenSubject(u, "", ""), "documents.read.own").Reason, u)
	}
	res := in.checkSub(t, f.tokenSubject("u3", "", ""), "documents.read.own")
	assert.Equal(t, pdp.ReasonUnknownUser, res.Reason, "got %s, want unknown_user over the limit", res.Reason)
	assert.Equal(t, pdp.DetailSyncRateLimited, res.Detail)
	assert.False(t, f.userRow(t, "u3").exists)
	assert.InDelta(t, 1, in.syncs(t, "rate_limited"), 0)
	// Users that exist are decided as ever.
	assert.True(t, in.check(t, "acme", "alice", "users.delete.tenant").Allowed)
}

func TestUserSyncConcurrentFirstTokensCreateOneRow(t *testing.T) {
	f := newFixture(t)
	a := f.start(t, pdp.Config{}, nil)
	b := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, []string{"member"}, a, b)
	sub := f.tokenSubject("hank", "hank@example.com", "hank")
	var wg gosync.WaitGroup
	var granted atomic.Int64
	start := make(chan struct{})
	for i := range 8 {
		in := []*instance{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := in.svc.Check(context.Background(), sub, pdp.Request{Permission: "documents.read.own"})
			if assert.NoError(t, err) && res.Allowed {
				granted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int64(8), granted.Load(), "every first token is decided on the new row")
	var n int
	require.NoError(t, f.db.QueryRow(context.Background(), `SELECT count(*) FROM t_acme.users WHERE external_id = 'hank'`).Scan(&n))
	assert.Equal(t, 1, n, "got %d rows, want 1", n)
	row := f.userRow(t, "hank")
	assert.Equal(t, 1, row.syncCreates, "got %d sync_create audit rows, want 1", row.syncCreates)
	assert.Equal(t, []string{"member"}, row.roles)
}

func TestUserSyncUpdatesChangedProfile(t *testing.T) {
	f := newFixture(t)
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	in := f.start(t, pdp.Config{Clock: clock, UserSync: pdp.UserSyncConfig{ProfileInterval: time.Hour}}, nil)
	f.setUserSync(t, true, []string{"member"}, in)
	require.True(t, in.checkSub(t, f.tokenSubject("ivy", "ivy@example.com", "ivy"), "documents.read.own").Allowed)

	// A changed email within the interval of the row's last change is deferred.
	renamed := f.tokenSubject("ivy", "ivy@new.example.com", "ivy.n")
	require.True(t, in.checkSub(t, renamed, "documents.read.own").Allowed)
	in.svc.WaitUserSync()
	assert.InDelta(t, 1, in.syncs(t, "deferred"), 0)
	assert.Equal(t, "ivy@example.com", *f.userRow(t, "ivy").email)

	// An hour later (the row's clock and the pdp's), the next token updates it.
	f.exec(t, `UPDATE t_acme.users SET updated_at = updated_at - interval '2 hours' WHERE external_id = 'ivy'`)
	offset.Store(int64(2 * time.Hour))
	require.True(t, in.checkSub(t, renamed, "documents.read.own").Allowed)
	in.svc.WaitUserSync()
	row := f.userRow(t, "ivy")
	assert.Equal(t, "ivy@new.example.com", *row.email)
	assert.Equal(t, "ivy.n", *row.display)
	assert.Equal(t, 1, row.update, "got %d sync_update audit rows, want 1", row.update)

	// The same profile again writes nothing more, and a token without profile claims never
	// clears the stored one.
	require.True(t, in.checkSub(t, renamed, "documents.read.own").Allowed)
	offset.Store(int64(4 * time.Hour))
	f.exec(t, `UPDATE t_acme.users SET updated_at = updated_at - interval '2 hours' WHERE external_id = 'ivy'`)
	require.True(t, in.checkSub(t, f.tokenSubject("ivy", "", ""), "documents.read.own").Allowed)
	in.svc.WaitUserSync()
	row = f.userRow(t, "ivy")
	assert.Equal(t, "ivy@new.example.com", *row.email)
	assert.Equal(t, 1, row.update)
}

func TestUserSyncDropsHostileClaims(t *testing.T) {
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, nil, in)
	for _, tc := range []struct{ sub, email, username string }{
		{"h1", "a\nb@example.com", "x\x00y"},
		{"h2", strings.Repeat("a", 320) + "@example.com", strings.Repeat("n", 201)},
		{"h3", "Jo <jo@example.com>", "ok"},
	} {
		res := in.checkSub(t, f.tokenSubject(tc.sub, tc.email, tc.username), "documents.read.own")
		assert.Equal(t, pdp.ReasonNoPermission, res.Reason, tc.sub)
		row := f.userRow(t, tc.sub)
		require.True(t, row.exists, tc.sub)
		assert.Nil(t, row.email, "%s: a malformed email was stored", tc.sub)
		if tc.username == "ok" {
			assert.Equal(t, "ok", *row.display)
		} else {
			assert.Nil(t, row.display, "%s: a malformed username was stored", tc.sub)
		}
	}
}

func TestUserSyncNotMaskedByCachedUnknownUser(t *testing.T) {
	// The unknown-user answer of a rate-limited first token is cached; the next token of that
	// user, once the bucket has refilled, creates the row and must be decided on it at once,
	// whether or not the write's notification has arrived yet.
	f := newFixture(t)
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	in := f.start(t, pdp.Config{Clock: clock, UnknownUserTTL: time.Hour, UserSync: pdp.UserSyncConfig{Rate: 1, Burst: 1}}, nil)
	f.setUserSync(t, true, []string{"member"}, in)
	require.True(t, in.checkSub(t, f.tokenSubject("j1", "", ""), "documents.read.own").Allowed)
	res := in.checkSub(t, f.tokenSubject("j2", "", ""), "documents.read.own")
	require.Equal(t, pdp.DetailSyncRateLimited, res.Detail, "got %s (%q), want a rate-limited unknown user", res.Reason, res.Detail)

	offset.Store(int64(2 * time.Second)) // one write's worth of refill
	res = in.checkSub(t, f.tokenSubject("j2", "", ""), "documents.read.own")
	assert.True(t, res.Allowed, "got %s (%q), want granted on the new row", res.Reason, res.Detail)
	assert.Empty(t, res.Detail)
}

func TestUserSyncFailureDeniesWithDetail(t *testing.T) {
	// The write path is unavailable (here: a schema without sync_user, as before tenant V4 or
	// without the GRANT): the token is denied, never answered with an error a proxy might
	// turn into an allow.
	f := newFixture(t)
	in := f.start(t, pdp.Config{}, nil)
	f.setUserSync(t, true, []string{"member"}, in)
	f.exec(t, `DROP FUNCTION t_acme.sync_user(text, text, text, interval)`)
	res := in.checkSub(t, f.tokenSubject("kate", "", ""), "documents.read.own")
	assert.False(t, res.Allowed)
	assert.Equal(t, pdp.ReasonUnknownUser, res.Reason)
	assert.Equal(t, pdp.DetailSyncFailed, res.Detail)
	assert.InDelta(t, 1, in.syncs(t, "error"), 0)
}
