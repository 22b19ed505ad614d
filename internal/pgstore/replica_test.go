//go:build unix

package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/metrictest"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

const replicaName = region + "-replica"

// replicaEnv is an env whose region's primary is a server of the test's own, with a real
// streaming replica registered as its replica.
type replicaEnv struct {
	*env
	primarySrv, replicaSrv *pgtest.Server
	replica                registry.Connection
	reg                    *prometheus.Registry
}

func newReplicaEnv(tb testing.TB, opts pgstore.Options) *replicaEnv {
	tb.Helper()
	p := pgtest.StartPrimary(tb)
	r := p.StartReplica(tb)
	w := testenv.New(tb, "pgstore")
	_, err := w.Registry.CreateRegion(context.Background(), registry.Region{Code: region})
	require.NoError(tb, err)
	primary := w.AddServerDatabase(tb, p.URL("postgres"), region, region+"-primary")
	r.CatchUp()
	replica := w.AddReplica(tb, primary, replicaName, r.URL("postgres"))
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	st := pgstore.New(w.Admin, w.Registry, opts)
	tb.Cleanup(st.Close)
	return &replicaEnv{env: &env{w: w, primary: primary, store: st}, primarySrv: p, replicaSrv: r, replica: replica, reg: reg}
}

// metric reads a counter or gauge of the store's, as a whole number.
func (e *replicaEnv) metric(tb testing.TB, name string, labels map[string]string) int {
	tb.Helper()
	return int(metrictest.Sum(tb, e.reg, name, labels))
}

func (e *replicaEnv) fills(tb testing.TB, source string) int {
	tb.Helper()
	return e.metric(tb, "db_fills_total", map[string]string{"source": source})
}

func (e *replicaEnv) fill(tb testing.TB, t pgstore.Tenant, user string, floor uint64) decision.Input {
	tb.Helper()
	in, err := e.store.FillTenantUser(context.Background(), t, user, func() uint64 { return floor })
	require.NoError(tb, err)
	return in
}

// waitFills fills until one is served by source (the replica list and the probes are read in
// the background, when fills come), failing after a generous deadline.
func (e *replicaEnv) waitFills(tb testing.TB, source string, t pgstore.Tenant) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for before := e.fills(tb, source); e.fills(tb, source) == before; {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for a fill from the %s", source)
		}
		e.fill(tb, t, "alice", 0)
	}
}

func TestFillTenantUserReadsTheReplica(t *testing.T) {
	e := newReplicaEnv(t, pgstore.Options{ReplicaFills: true, RecheckInterval: 50 * time.Millisecond,
		ReplicaProbeInterval: 50 * time.Millisecond})
	acme, db := e.createTenant(t, tenancy.CreateRequest{Slug: "acme", Realm: "acme"})
	_, err := db.Exec(context.Background(), `INSERT INTO `+table(acme.SchemaName, "users")+` (external_id) VALUES ('alice')`)
	require.NoError(t, err)
	e.replicaSrv.CatchUp()
	e.waitFills(t, "replica", acme)
	assert.Equal(t, 1, e.metric(t, "db_replica_up", map[string]string{"replica": replicaName}))

	fromReplica := e.fill(t, acme, "alice", 0)
	fromPrimary, err := e.store.LoadTenantUser(context.Background(), acme, "alice")
	require.NoError(t, err)
	assert.Equal(t, normalize(fromPrimary), normalize(fromReplica), "the replica serves the primary's facts")
	assert.True(t, fromReplica.UserKnown)

	// A floor above the replica's version: the primary answers, whatever it has.
	v := stateVersion(t, db, acme.SchemaName)
	primary := e.fills(t, "primary")
	in := e.fill(t, acme, "alice", v+1)
	assert.Equal(t, v, in.Version)
	assert.Equal(t, primary+1, e.fills(t, "primary"))
	assert.Equal(t, 1, e.metric(t, "db_replica_fallbacks_total", map[string]string{"reason": "stale"}))

	// Replay paused, a tenant provisioned on the primary: the replica has no schema for it. The
	// error sends the fill to the primary, and the replica, which answered, stays in use.
	e.replicaSrv.PauseReplay()
	beta, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "beta", Realm: "beta"})
	primary = e.fills(t, "primary")
	in = e.fill(t, beta, "bob", 0)
	assert.False(t, in.UserKnown)
	assert.Positive(t, in.Version)
	assert.Equal(t, primary+1, e.fills(t, "primary"))
	assert.Equal(t, 1, e.metric(t, "db_replica_fallbacks_total", map[string]string{"reason": "error"}))
	assert.Equal(t, 1, e.metric(t, "db_replica_up", map[string]string{"replica": replicaName}))
	replica := e.fills(t, "replica")
	e.fill(t, acme, "alice", 0)
	assert.Equal(t, replica+1, e.fills(t, "replica"), "acme's fills still come from the replica")
	e.replicaSrv.ResumeReplay()

	// Without ReplicaFills, every fill reads the primary.
	off := pgstore.New(e.w.Admin, e.w.Registry, pgstore.Options{RecheckInterval: 50 * time.Millisecond, ReplicaProbeInterval: 50 * time.Millisecond})
	t.Cleanup(off.Close)
	replica = e.fills(t, "replica")
	for range 20 {
		_, err := off.FillTenantUser(context.Background(), acme, "alice", func() uint64 { return 0 })
		require.NoError(t, err)
	}
	assert.Equal(t, replica, e.fills(t, "replica"))

	// A replica deactivated in the registry stops serving fills.
	_, err = e.w.Registry.Deactivate(context.Background(), replicaName)
	require.NoError(t, err)
	e.waitFills(t, "primary", acme)
	replica = e.fills(t, "replica")
	for range 20 {
		e.fill(t, acme, "alice", 0)
	}
	assert.Equal(t, replica, e.fills(t, "replica"))
}

func TestPromotedReplicaIsNotUsed(t *testing.T) {
	e := newReplicaEnv(t, pgstore.Options{ReplicaFills: true, RecheckInterval: 50 * time.Millisecond,
		ReplicaProbeInterval: 50 * time.Millisecond})
	acme, _ := e.createTenant(t, tenancy.CreateRequest{Slug: "acme", Realm: "acme"})
	e.replicaSrv.CatchUp()
	e.waitFills(t, "replica", acme)

	// Promoted, it no longer follows the primary the registry names: which of the two is
	// newer is unknown, so fills go to the registered primary.
	e.replicaSrv.Exec(`SELECT pg_promote()`)
	deadline := time.Now().Add(60 * time.Second)
	for e.metric(t, "db_replica_up", map[string]string{"replica": replicaName}) != 0 {
		require.True(t, time.Now().Before(deadline), "timed out waiting for the probe to find the replica promoted")
		e.fill(t, acme, "alice", 0)
	}
	replica := e.fills(t, "replica")
	for range 20 {
		e.fill(t, acme, "alice", 0)
	}
	assert.Equal(t, replica, e.fills(t, "replica"))
}

// BenchmarkFillTenantUser compares one fill read from the replica with one read from the
// primary, over random users of a 100,000-user tenant (the data set of BenchmarkLoadTenantUser).
// The primary and the replica are two servers of the benchmark's own, with the same settings,
// on this machine; the two run alternately, three times each.
func BenchmarkFillTenantUser(b *testing.B) {
	ctx := context.Background()
	opts := pgstore.Options{MaxConnsPerDatabase: 16}
	opts.ReplicaFills = true
	e := newReplicaEnv(b, opts)
	tn, db := e.createTenant(b, tenancy.CreateRequest{Slug: "bench", Realm: "bench"})
	buildBenchData(b, db, tn.SchemaName)
	e.replicaSrv.CatchUp()
	e.waitFills(b, "replica", tn)
	opts.ReplicaFills, opts.Registerer = false, nil
	primaryOnly := pgstore.New(e.w.Admin, e.w.Registry, opts)
	b.Cleanup(primaryOnly.Close)
	ids := make([]string, benchUsers)
	for i := range ids {
		ids[i] = fmt.Sprintf("bu-%06d", i)
	}
	floor := func() uint64 { return 0 }
	for _, st := range []*pgstore.Store{e.store, primaryOnly} { // open pools, prepare statements
		for i := range 64 {
			_, err := st.FillTenantUser(ctx, tn, ids[i], floor)
			require.NoError(b, err)
		}
	}
	// Alternately, three times each: load on this machine comes and goes.
	type run struct {
		name  string
		store *pgstore.Store
	}
	for _, c := range slices.Repeat([]run{{"primary", primaryOnly}, {"replica", e.store}}, 3) {
		b.Run(c.name, func(b *testing.B) {
			replica := e.fills(b, "replica")
			rng := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, 1<<16)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				in, err := c.store.FillTenantUser(ctx, tn, ids[rng.IntN(len(ids))], floor)
				lat = append(lat, time.Since(start))
				if err != nil || !in.UserKnown {
					b.Fatalf("fill: got %v (known %v), want a known user", err, in.UserKnown)
				}
			}
			reportLatency(b, lat)
			if c.store == e.store {
				b.ReportMetric(100*float64(e.fills(b, "replica")-replica)/float64(len(lat)), "%-from-replica")
			}
		})
	}
}
