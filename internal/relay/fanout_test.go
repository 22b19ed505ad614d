//go:build linux

package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/pgtest"
	"github.com/neofast/neoauthz/internal/redistest"
	authzsync "github.com/neofast/neoauthz/internal/sync"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// The fan-out run (make bench-scale): one relay, Redis, PostgreSQL and 50 pdp processes of
// the built binary.
const (
	fanRevocations = 200
	fanSteadyUsers = 20
	fanFewPDPs     = 10
	fanManyPDPs    = 50
	// fanHeartbeat is the relay's heartbeat; pdps trust a database for twice it.
	fanHeartbeat = time.Second
	fanStaleness = 2 * fanHeartbeat
	// fanBackgroundEvery is each pdp's background check period (50 pdps: 500 checks/s in
	// all, modest for two cores).
	fanBackgroundEvery = 100 * time.Millisecond
	// fanPollEvery paces the checks that wait for a revocation to arrive.
	fanPollEvery = 2 * time.Millisecond
	// fanPoolSize is PgBouncer's server connections per database.
	fanPoolSize = 4
	// fanConnBound is the most PostgreSQL connections the run may hold on its databases,
	// whatever the number of pdps: PgBouncer's pools (2 × fanPoolSize), the relay's two LISTEN
	// connections and its capped pools (2 × 4), the test's own pools (2 × 4), and room.
	fanConnBound = 40
)

type fanPDP struct {
	idx      int
	cmd      *exec.Cmd
	httpBase string
	api      authzv1.AuthorizationServiceClient
}

type fanRun struct {
	t       *testing.T
	bin     string
	dir     string
	w       *testenv.World
	region  *pgxpool.Pool
	idp     *authntest.Issuer
	redis   *redistest.Server
	bouncer *pgtest.PgBouncer
	primary string // the registered connection's name
	stream  string
	tenant  tenancy.Tenant
	tokens  map[string]string
	pdps    []*fanPDP
	relay   *exec.Cmd
	dbNames []string
	// nextPort and portLimit hand out the children's ports (port).
	nextPort, portLimit int
}

// port returns a loopback port for a child process to listen on. A port found by listening on
// :0 and closing can be handed out again by the kernel — to another :0 listener, or as the
// source port of one of the many outgoing connections 50 pdps open — before the child binds
// it; so ports come from below the kernel's ephemeral range, each at most once per run, and
// are checked free when handed out.
func (r *fanRun) port() string {
	r.t.Helper()
	if r.nextPort == 0 {
		low := 32768
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			_, _ = fmt.Sscan(string(b), &low)
		}
		require.Greater(r.t, low, 12000, "the ephemeral port range starts too low to pick ports below it")
		r.portLimit = low
		r.nextPort = 10000 + rand.IntN(low-12000) // room for the run's ~110 ports above it
	}
	for ; r.nextPort < r.portLimit; r.nextPort++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.nextPort))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken by something else on the machine
		}
		require.NoError(r.t, l.Close())
		r.nextPort++
		return addr
	}
	r.t.Fatal("no free loopback port below the ephemeral range")
	return ""
}

// start runs the binary with args and env; it dies with the test process.
func (r *fanRun) start(name string, env []string, args ...string) *exec.Cmd {
	r.t.Helper()
	log, err := os.Create(filepath.Join(r.dir, name+".log"))
	require.NoError(r.t, err)
	defer log.Close()
	cmd := exec.Command(r.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(r.t, cmd.Start())
	r.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func (r *fanRun) commonEnv() []string {
	return []string{"ADMIN_DATABASE_URL=" + r.w.AdminURL, "REDIS_URL=" + r.redis.URL(), "NEOAUTHZ_SECRET_KEY=",
		"NEOAUTHZ_HEARTBEAT=" + fanHeartbeat.String(), "NEOAUTHZ_RELAY_STREAM=" + r.stream, "NEOAUTHZ_LOG_LEVEL=warn"}
}

func (r *fanRun) startRelay() {
	r.relay = r.start("relay", r.commonEnv(), "relay", "-http-addr", r.port())
}

func (r *fanRun) killRelay() {
	_ = r.relay.Process.Kill()
	_ = r.relay.Wait()
}

func (r *fanRun) startPDPs(n int) {
	r.t.Helper()
	first := len(r.pdps)
	for i := first; i < first+n; i++ {
		grpcAddr, httpAddr := r.port(), r.port()
		env := append(r.commonEnv(), "NEOAUTHZ_SYNC=relay",
			"ADMIN_DATABASE_POOLER_URL="+r.bouncer.URL(r.dbNames[0]), "NEOAUTHZ_DB_POOLERS="+r.primary+"="+r.bouncer.Addr(), "NEOAUTHZ_TRUSTED_ISSUERS="+r.idp.URL(),
			"NEOAUTHZ_AUDIENCES=neoauthz", "NEOAUTHZ_DECISION_LOG=false", "NEOAUTHZ_CACHE_MAX_BYTES=8MiB",
			"GOMAXPROCS=1", "GOMEMLIMIT=96MiB")
		cmd := r.start("pdp-"+strconv.Itoa(i), env, "-grpc-addr", grpcAddr, "-http-addr", httpAddr)
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(r.t, err)
		r.t.Cleanup(func() { _ = conn.Close() })
		r.pdps = append(r.pdps, &fanPDP{idx: i, cmd: cmd, httpBase: "http://" + httpAddr, api: authzv1.NewAuthorizationServiceClient(conn)})
	}
	r.eachPDP(r.pdps[first:], func(p *fanPDP) { r.waitTrusting(p, true) })
	if r.t.Failed() {
		r.t.FailNow()
	}
}

// eachPDP runs fn for every pdp at once.
func (r *fanRun) eachPDP(pdps []*fanPDP, fn func(p *fanPDP)) {
	var wg gosync.WaitGroup
	for _, p := range pdps {
		wg.Go(func() { fn(p) })
	}
	wg.Wait()
}

// listenerStatus is the pdp's /health view of the admin database ("" when it does not answer).
func (p *fanPDP) listenerStatus() string {
	resp, err := http.Get(p.httpBase + "/health")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body struct {
		Dependencies map[string]struct {
			Status string `json:"status"`
		} `json:"dependencies"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return ""
	}
	return body.Dependencies["listeners"].Status
}

// databaseUp reads sync_listener_up of a database from the pdp's /metrics.
func (p *fanPDP) databaseUp(db string) bool {
	resp, err := http.Get(p.httpBase + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), `sync_listener_up{database="`+db+`"} 1`)
}

// waitTrusting waits until the pdp trusts (or distrusts) every database and returns when
// /health first showed it. It runs on eachPDP's goroutines, so a pdp that never gets there is
// an error (t.Errorf, ok false) and the caller stops the test on its own goroutine.
func (r *fanRun) waitTrusting(p *fanPDP, trusting bool) (at time.Time, ok bool) {
	want := "degraded"
	if trusting {
		want = "ok"
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if at.IsZero() && p.listenerStatus() == want {
			at = time.Now()
		}
		if !at.IsZero() && p.databaseUp(r.tenantDB()) == trusting && p.databaseUp(authzsync.AdminDatabase) == trusting {
			return at, true
		}
		if time.Now().After(deadline) {
			r.t.Errorf("pdp %d: never reached listeners=%s (see %s)", p.idx, want, r.dir)
			return time.Time{}, false
		}
		time.Sleep(20 * time.Millisecond) // polling another process; no event to wait on
	}
}

func (r *fanRun) tenantDB() string { return authzsync.DatabaseKey(*r.tenant.ConnectionID, "") }

func (r *fanRun) allowed(p *fanPDP, user string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.api.Check(ctx, &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: r.tokens[user]}},
		Permission: "users.delete.tenant"})
	return res.GetAllowed(), err
}

func (r *fanRun) revoke(user string) time.Time {
	_, err := r.region.Exec(context.Background(), `DELETE FROM t_acme.user_roles WHERE user_id = (SELECT id FROM t_acme.users WHERE external_id = $1)`, user)
	require.NoError(r.t, err)
	return time.Now()
}

// connections counts PostgreSQL connections to the run's databases, and LISTEN connections.
func (r *fanRun) connections() (all, listeners int) {
	r.t.Helper()
	require.NoError(r.t, r.w.Admin.QueryRow(context.Background(), `SELECT count(*),
		count(*) FILTER (WHERE application_name = $2) FROM pg_stat_activity WHERE datname = ANY($1)`,
		r.dbNames, authzsync.ListenerApplicationName).Scan(&all, &listeners))
	return all, listeners
}

// metric reads a sample of the pdp's /metrics (0 when absent).
func (p *fanPDP) metric(sample string) float64 {
	resp, err := http.Get(p.httpBase + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func summary(d []time.Duration) string {
	if len(d) == 0 {
		return "n=0"
	}
	slices.Sort(d)
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(d), percentile(d, .5).Round(100*time.Microsecond),
		percentile(d, .99).Round(100*time.Microsecond), d[len(d)-1].Round(100*time.Microsecond))
}

// background checks random users on every pdp until stop: steady users must be allowed and
// users already denied on that pdp never allowed again.
type background struct {
	checks, errors, violations atomic.Int64
	mu                         gosync.Mutex
	denied                     map[int]map[string]bool // pdp → users it has denied
}

func (b *background) markDenied(pdp int, user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.denied[pdp] == nil {
		b.denied[pdp] = map[string]bool{}
	}
	b.denied[pdp][user] = true
}

func (b *background) wasDenied(pdp int, user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.denied[pdp][user]
}

func (r *fanRun) runBackground(ctx context.Context, b *background, users []string) *gosync.WaitGroup {
	var wg gosync.WaitGroup
	for _, p := range r.pdps {
		wg.Go(func() {
			tick := time.NewTicker(fanBackgroundEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				user := users[rand.IntN(len(users))]
				denied := b.wasDenied(p.idx, user)
				ok, err := r.allowed(p, user)
				b.checks.Add(1)
				switch {
				case err != nil:
					b.errors.Add(1)
				case ok && denied:
					b.violations.Add(1)
				case !ok && strings.HasPrefix(user, "steady"):
					b.violations.Add(1)
				}
			}
		})
	}
	return &wg
}

// TestFanOut is `make bench-scale`: see docs/scale.md ("Relay") for what it proves.
func TestFanOut(t *testing.T) {
	if os.Getenv("NEOAUTHZ_BENCH_SCALE") == "" {
		t.Skip("the fan-out run starts 50 pdp processes: run it with make bench-scale (NEOAUTHZ_BENCH_SCALE=1)")
	}
	ctx := context.Background()
	// The children's logs outlive a failed run, for its diagnosis (t.TempDir would remove them).
	dir, err := os.MkdirTemp("", "neoauthz-fanout-")
	require.NoError(t, err)
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	r := &fanRun{t: t, dir: dir, tokens: map[string]string{}}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	r.bin = filepath.Join(root, "bin", "pdp")
	build := exec.Command("go", "build", "-o", r.bin, "./cmd/pdp")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	r.redis = redistest.StartServer(t)
	r.w = testenv.New(t, "fanout")
	primary := r.w.AddRegion(t, "us-east-1")
	r.tenant, err = r.w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "acme", Region: "us-east-1", Realm: "acme-realm"})
	require.NoError(t, err)
	r.region = r.w.Connect(t, primary, "")
	r.dbNames = []string{r.w.Admin.Config().ConnConfig.Database, r.region.Config().ConnConfig.Database}
	r.primary = primary.Name
	// pdps read through PgBouncer in transaction pooling mode; the relay listens directly.
	r.bouncer = pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{PoolSize: fanPoolSize})
	r.stream = "neoauthz:fanout:{relay}:events"

	var revocable, steady []string
	for i := range fanRevocations {
		revocable = append(revocable, fmt.Sprintf("user%03d", i))
	}
	for i := range fanSteadyUsers {
		steady = append(steady, fmt.Sprintf("steady%02d", i))
	}
	all := append(slices.Clone(revocable), steady...)
	_, err = r.region.Exec(ctx, `INSERT INTO t_acme.users (external_id) SELECT unnest($1::text[])`, all)
	require.NoError(t, err)
	_, err = r.region.Exec(ctx, `INSERT INTO t_acme.user_roles (user_id, role_id)
		SELECT u.id, r.id FROM t_acme.users u, t_acme.roles r WHERE r.code = 'admin'`)
	require.NoError(t, err)
	r.idp = authntest.NewIssuer()
	t.Cleanup(r.idp.Close)
	_, err = r.idp.AddRealm("acme-realm", "RS256")
	require.NoError(t, err)
	for _, u := range all {
		tok, err := r.idp.Mint("acme-realm", map[string]any{"sub": u, "typ": "Bearer", "aud": "neoauthz"})
		require.NoError(t, err)
		r.tokens[u] = tok
	}

	r.startRelay()
	warm := func(pdps []*fanPDP) {
		r.eachPDP(pdps, func(p *fanPDP) {
			for _, u := range all {
				ok, err := r.allowed(p, u)
				assert.NoError(t, err)
				assert.True(t, ok, "pdp %d: %s denied before any revocation", p.idx, u)
			}
		})
	}

	// 10 pdps, then 50: PostgreSQL connections after each has warmed every user.
	r.startPDPs(fanFewPDPs)
	warm(r.pdps)
	conns10, listen10 := r.connections()
	r.startPDPs(fanManyPDPs - fanFewPDPs)
	warm(r.pdps[fanFewPDPs:])
	conns50, listen50 := r.connections()

	// 200 revocations under background checks; each must reach every pdp, and once a pdp
	// has denied, it never allows again.
	bg := &background{denied: map[int]map[string]bool{}}
	bctx, stopBG := context.WithCancel(ctx)
	bgWG := r.runBackground(bctx, bg, all)
	var peak atomic.Int64
	sampler := make(chan struct{})
	go func() {
		defer close(sampler)
		for bctx.Err() == nil {
			c, _ := r.connections()
			for cur := peak.Load(); int64(c) > cur && !peak.CompareAndSwap(cur, int64(c)); cur = peak.Load() {
			}
			select {
			case <-bctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	var latMu gosync.Mutex
	var latencies []time.Duration
	var afterDeny, waitErrors atomic.Int64
	for _, user := range revocable {
		committed := r.revoke(user)
		r.eachPDP(r.pdps, func(p *fanPDP) {
			deadline := committed.Add(time.Minute)
			for {
				ok, err := r.allowed(p, user)
				if err != nil {
					waitErrors.Add(1)
				}
				if err == nil && !ok {
					lat := time.Since(committed)
					bg.markDenied(p.idx, user)
					latMu.Lock()
					latencies = append(latencies, lat)
					latMu.Unlock()
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("pdp %d: %s not denied a minute after the revocation (last error: %v)", p.idx, user, err)
					return
				}
				time.Sleep(fanPollEvery) // pacing the checks of 50 pdps on 2 cores
			}
			for range 3 {
				if ok, err := r.allowed(p, user); err == nil && ok {
					afterDeny.Add(1)
				}
			}
		})
	}
	stopBG()
	bgWG.Wait()
	<-sampler

	t.Logf("commit → deny across %d pdps: %s", len(r.pdps), summary(latencies))
	var sum, count, rss, rssMax float64
	for _, p := range r.pdps {
		sum += p.metric("sync_staleness_seconds_sum")
		count += p.metric("sync_staleness_seconds_count")
		m := rssMiB(p.cmd.Process.Pid)
		rss += m
		rssMax = max(rssMax, m)
	}
	if count > 0 {
		t.Logf("trigger → floor raised in the pdps (sync_staleness_seconds): mean %v over %.0f notifications",
			time.Duration(sum/count*float64(time.Second)).Round(100*time.Microsecond), count)
	}
	t.Logf("pdp memory: %.0f MiB resident in all, %.0f MiB the largest; relay %.0f MiB", rss, rssMax, rssMiB(r.relay.Process.Pid))
	t.Logf("background checks: %d, errors %d, wrong decisions %d; allows after a deny: %d; errors while waiting for a deny: %d",
		bg.checks.Load(), bg.errors.Load(), bg.violations.Load(), afterDeny.Load(), waitErrors.Load())
	t.Logf("PostgreSQL connections on the run's databases: %d pdps → %d (%d LISTEN), %d pdps → %d (%d LISTEN), peak during the revocations %d (bound %d)",
		fanFewPDPs, conns10, listen10, fanManyPDPs, conns50, listen50, peak.Load(), fanConnBound)
	assert.Len(t, latencies, fanRevocations*fanManyPDPs)
	assert.Zero(t, afterDeny.Load(), "a pdp allowed after it had denied")
	assert.Zero(t, bg.violations.Load(), "wrong decisions under background checks")
	assert.Zero(t, bg.errors.Load()+waitErrors.Load(), "checks failed")
	assert.Equal(t, listen10, listen50, "LISTEN connections grew with the number of pdps")
	assert.LessOrEqual(t, int(peak.Load()), fanConnBound)
	assert.LessOrEqual(t, conns50, fanConnBound)

	// The relay killed, then Redis: every pdp stops trusting (a revocation committed then is
	// denied on the first check) and trusts again once the component is back.
	outage := func(name string, kill, restore func(), user string) {
		killed := time.Now()
		kill()
		var mu gosync.Mutex
		var distrust []time.Duration
		r.eachPDP(r.pdps, func(p *fanPDP) {
			at, ok := r.waitTrusting(p, false)
			if !ok {
				return
			}
			mu.Lock()
			distrust = append(distrust, at.Sub(killed))
			mu.Unlock()
		})
		r.revoke(user)
		var allowedAfter atomic.Int64
		r.eachPDP(r.pdps, func(p *fanPDP) {
			if ok, err := r.allowed(p, user); err != nil || ok {
				allowedAfter.Add(1)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		restored := time.Now()
		restore()
		var recovery []time.Duration
		r.eachPDP(r.pdps, func(p *fanPDP) {
			at, ok := r.waitTrusting(p, true)
			if !ok {
				return
			}
			mu.Lock()
			recovery = append(recovery, at.Sub(restored))
			mu.Unlock()
		})
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("%s killed: distrusted after %s (staleness bound %v); back: trusted again after %s",
			name, summary(distrust), fanStaleness, summary(recovery))
		assert.Zero(t, allowedAfter.Load(), "%s down: pdps allowed (or failed) a revocation committed during the outage", name)
		r.eachPDP(r.pdps, func(p *fanPDP) {
			ok, err := r.allowed(p, user)
			assert.NoError(t, err)
			assert.False(t, ok, "pdp %d allows %s after the outage", p.idx, user)
		})
	}
	outage("relay", r.killRelay, r.startRelay, steady[0])
	outage("Redis", r.redis.Kill, r.redis.Start, steady[1])
}
