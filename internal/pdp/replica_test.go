//go:build unix

package pdp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/testenv"
)

// replicaFixture is the pdp fixture's tenant on a PostgreSQL primary of the test's own, with a
// real streaming replica registered as its replica.
type replicaFixture struct {
	*fixture
	primary, replica *pgtest.Server
	replicaConn      registry.Connection
}

func newReplicaFixture(t testing.TB) *replicaFixture {
	t.Helper()
	primarySrv := pgtest.StartPrimary(t)
	replicaSrv := primarySrv.StartReplica(t)
	w := testenv.New(t, "pdp")
	_, err := w.Registry.CreateRegion(context.Background(), registry.Region{Code: "us-east-1"})
	require.NoError(t, err)
	primary := w.AddServerDatabase(t, primarySrv.URL("postgres"), "us-east-1", "us-east-1-primary")
	replicaSrv.CatchUp() // the database exists on the replica too
	rc := w.AddReplica(t, primary, "us-east-1-replica", replicaSrv.URL("postgres"))
	f := newFixtureOn(t, w, primary)
	// Short intervals: the replica list and the probes are read in the background.
	f.storeOpts = pgstore.Options{ReplicaFills: true, RecheckInterval: 100 * time.Millisecond,
		ReplicaProbeInterval: 100 * time.Millisecond}
	replicaSrv.CatchUp()
	return &replicaFixture{fixture: f, primary: primarySrv, replica: replicaSrv, replicaConn: rc}
}

// fills reads db_fills_total{source}.
func (in *instance) fills(t testing.TB, source string) int {
	t.Helper()
	return int(metrictest.Sum(t, in.reg, "db_fills_total", map[string]string{"source": source}))
}

// fallbacks reads db_replica_fallbacks_total{reason}.
func (in *instance) fallbacks(t testing.TB, reason string) int {
	t.Helper()
	return int(metrictest.Sum(t, in.reg, "db_replica_fallbacks_total", map[string]string{"reason": reason}))
}

// fillUnknown checks a user nobody has seen (so the check is a cache fill) and requires the
// right answer.
func (in *instance) fillUnknown(t testing.TB, n *int) {
	t.Helper()
	*n++
	res := in.check(t, "acme", fmt.Sprintf("nobody-%d", *n), "users.delete.tenant")
	require.False(t, res.Allowed)
	require.Equal(t, pdp.ReasonUnknownUser, res.Reason)
}

// waitFor fills for users nobody has seen until cond holds (probes and registry reads run
// when fills come), failing after a generous deadline.
func (in *instance) waitFor(t testing.TB, what string, n *int, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		in.fillUnknown(t, n)
	}
}

// replicaVersion reads the tenant's version on the replica itself.
func (f *replicaFixture) replicaVersion(t testing.TB) uint64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.WithDatabase(f.replica.URL("postgres"), f.replicaConn.Database))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var v int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT version FROM t_acme.authz_state`).Scan(&v))
	return uint64(v)
}

func TestReplicaFillsHonourFloors(t *testing.T) {
	f := newReplicaFixture(t)
	const perm = "users.delete.tenant"
	in := f.start(t, pdp.Config{}, nil)
	// held never hears a notification: only a consistency token makes it read newer data.
	held := f.startHeld(t, pdp.Config{})
	var n int
	replicaServes := func(in *instance) func() bool { return func() bool { return in.fills(t, "replica") > 0 } }
	in.waitFor(t, "fills are served by the replica", &n, replicaServes(in))
	held.waitFor(t, "the held pdp's fills are served by the replica", &n, replicaServes(held))
	require.True(t, in.check(t, "acme", "alice", perm).Allowed)

	// Replay paused, alice's role revoked on the primary: the replica still grants it.
	f.replica.PauseReplay()
	f.exec(t, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`)
	require.Less(t, f.replicaVersion(t), f.version(t), "the paused replica has not replayed the revocation")

	in.waitFloor(t, f.tenant.ID, f.version(t))
	stale, primary, replica := in.fallbacks(t, "stale"), in.fills(t, "primary"), in.fills(t, "replica")
	res := in.check(t, "acme", "alice", perm)
	assert.False(t, res.Allowed, "the notified revocation denies, though the replica still grants")
	assert.Equal(t, pdp.ReasonNoPermission, res.Reason)
	assert.Equal(t, stale+1, in.fallbacks(t, "stale"), "the replica's fill was below the floor")
	assert.Equal(t, primary+1, in.fills(t, "primary"), "and was read again from the primary")
	assert.Equal(t, replica, in.fills(t, "replica"))

	// The floor is alice's: other users' data on the replica is as new as the pdp knows of, so
	// the paused replica keeps serving them.
	replica = in.fills(t, "replica")
	in.fillUnknown(t, &n)
	assert.Equal(t, replica+1, in.fills(t, "replica"), "the paused replica still serves users the revocation did not touch")

	// The held pdp hears nothing, but a write's consistency token names its version: bob's new
	// grant is seen though the replica does not have it.
	grant := f.tenantWrite(t, `INSERT INTO t_acme.user_permissions (user_id, permission_id, is_granted)
		SELECT u.id, p.id, true FROM t_acme.users u, t_acme.permissions p WHERE u.external_id = 'bob' AND p.code = '`+perm+`'`)
	sub, err := held.svc.SubjectFromPrincipal(context.Background(), "acme", "bob")
	require.NoError(t, err)
	stale = held.fallbacks(t, "stale")
	res, err = held.svc.Check(context.Background(), sub, pdp.Request{Permission: perm, Consistency: grant})
	require.NoError(t, err)
	assert.True(t, res.Allowed, "the consistency token's version is honoured though the replica is older")
	assert.Equal(t, stale+1, held.fallbacks(t, "stale"))

	// The replica lags, and says so.
	in.waitFor(t, "the lag metrics show the paused replica behind", &n, func() bool {
		return metrictest.Sum(t, in.reg, "db_replica_lag_bytes", map[string]string{"replica": "us-east-1-replica"}) > 0 &&
			metrictest.Sum(t, in.reg, "db_replica_lag_seconds", map[string]string{"replica": "us-east-1-replica"}) > 0
	})

	// Resumed and caught up, the replica serves alice's next fill again.
	f.replica.ResumeReplay()
	f.exec(t, `INSERT INTO t_acme.user_roles (user_id, role_id)
		SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id = 'alice' AND r.code = 'admin'`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	f.replica.CatchUp()
	stale, primary, replica = in.fallbacks(t, "stale"), in.fills(t, "primary"), in.fills(t, "replica")
	assert.True(t, in.check(t, "acme", "alice", perm).Allowed)
	assert.Equal(t, replica+1, in.fills(t, "replica"), "the caught-up replica serves the fill")
	assert.Equal(t, primary, in.fills(t, "primary"))
	assert.Equal(t, stale, in.fallbacks(t, "stale"))
	in.waitFor(t, "the lag metric is back to 0", &n, func() bool {
		return metrictest.Sum(t, in.reg, "db_replica_lag_bytes", map[string]string{"replica": "us-east-1-replica"}) == 0
	})
}

func TestReplicaDownFillsFromPrimary(t *testing.T) {
	f := newReplicaFixture(t)
	const perm = "users.delete.tenant"
	in := f.start(t, pdp.Config{}, nil)
	var n int
	in.waitFor(t, "fills are served by the replica", &n, func() bool { return in.fills(t, "replica") > 0 })
	require.True(t, in.check(t, "acme", "alice", perm).Allowed)

	errs := in.fallbacks(t, "error")
	f.replica.Stop()
	f.exec(t, `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = 'alice')`)
	in.waitFloor(t, f.tenant.ID, f.version(t))
	replica := in.fills(t, "replica")
	res := in.check(t, "acme", "alice", perm)
	assert.False(t, res.Allowed, "with the replica down the fill comes from the primary, and is right")
	assert.Equal(t, pdp.ReasonNoPermission, res.Reason)
	for range 20 {
		in.fillUnknown(t, &n) // no error reaches the caller
	}
	assert.Equal(t, replica, in.fills(t, "replica"), "nothing is served by a stopped replica")
	assert.LessOrEqual(t, in.fallbacks(t, "error")-errs, 1, "at most one fill found the replica gone; the next ones went to the primary directly")
	assert.Zero(t, metrictest.Sum(t, in.reg, "db_replica_up", map[string]string{"replica": "us-east-1-replica"}))

	// Back up, the replica is probed and serves again.
	f.replica.Start()
	f.replica.CatchUp()
	in.waitFor(t, "fills are served by the restarted replica", &n, func() bool { return in.fills(t, "replica") > replica })
	assert.False(t, in.check(t, "acme", "alice", perm).Allowed)
}

// BenchmarkReplicaFillShare measures which server answers cache fills under traffic that
// keeps making entries stale: parallel checks of 1,000 users while a writer revokes or
// restores a random user's role every 2ms on the primary. Each write raises that user's floor,
// so the user's next check is a fill; the replica serves it when it has already replayed the
// write, the primary when it has not. Reported: the share of fills the replica served, and the
// fills sent back to the primary as stale.
func BenchmarkReplicaFillShare(b *testing.B) {
	f := newReplicaFixture(b)
	const users, perm = 1000, "users.delete.tenant"
	f.exec(b, `INSERT INTO t_acme.users (external_id) SELECT 'u-' || g FROM generate_series(0, $1 - 1) g`, users)
	f.exec(b, `INSERT INTO t_acme.user_roles (user_id, role_id)
		SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE u.external_id LIKE 'u-%' AND r.code = 'admin'`)
	f.replica.CatchUp()
	in := f.start(b, pdp.Config{}, nil)
	var n int
	in.waitFor(b, "fills are served by the replica", &n, func() bool { return in.fills(b, "replica") > 0 })

	// The fixture is built once; the sub-benchmark is what runs b.N checks.
	b.Run("checks", func(b *testing.B) {
		stop := make(chan struct{})
		done := make(chan struct{})
		var writes atomic.Int64
		go func() {
			defer close(done)
			rng := rand.New(rand.NewPCG(7, 8))
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				user := fmt.Sprintf("u-%d", rng.IntN(users))
				_, err := f.db.Exec(context.Background(), `WITH gone AS (
						DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = $1) RETURNING 1)
					INSERT INTO t_acme.user_roles (user_id, role_id)
					SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r
					 WHERE u.external_id = $1 AND r.code = 'admin' AND NOT EXISTS (SELECT 1 FROM gone)`, user)
				if err != nil {
					b.Error(err)
					return
				}
				writes.Add(1)
			}
		}()
		replica, primary, stale := in.fills(b, "replica"), in.fills(b, "primary"), in.fallbacks(b, "stale")
		var failed atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 9))
			for pb.Next() {
				sub, err := in.svc.SubjectFromPrincipal(context.Background(), "acme", fmt.Sprintf("u-%d", rng.IntN(users)))
				if err == nil {
					_, err = in.svc.Check(context.Background(), sub, pdp.Request{Permission: perm})
				}
				if err != nil {
					failed.Add(1)
				}
			}
		})
		b.StopTimer()
		close(stop)
		<-done
		fromReplica, fromPrimary := in.fills(b, "replica")-replica, in.fills(b, "primary")-primary
		if fills := fromReplica + fromPrimary; fills > 0 {
			b.ReportMetric(100*float64(fromReplica)/float64(fills), "%-fills-from-replica")
		}
		b.ReportMetric(float64(fromReplica+fromPrimary), "fills")
		b.ReportMetric(float64(in.fallbacks(b, "stale")-stale), "stale-fallbacks")
		b.ReportMetric(float64(writes.Load()), "writes")
		b.ReportMetric(float64(failed.Load()), "failed-checks")
	})
}
