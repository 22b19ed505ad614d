package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// outcome is what one request came back with.
type outcome uint8

const (
	outAllowed outcome = iota
	outDenied          // a decision: no permission or explicit deny
	outOther           // an answer the data set should never produce (401, unknown user, ...): counted as an error
)

// likelyShare is the share of requests (in percent) asking for a code the user's roles grant;
// the others ask for any catalog code, most of which the user does not hold.
const likelyShare = 90

// pickCode chooses the permission (catalog index) of a request for u.
func pickCode(u *User, catalog int, rng *rand.Rand) int {
	if len(u.Likely) > 0 && rng.IntN(100) < likelyShare {
		return int(u.Likely[rng.IntN(len(u.Likely))])
	}
	return rng.IntN(catalog)
}

// caller sends one request on connection conn for user u and catalog code code. detail says
// what an outOther answer was.
type caller interface {
	call(ctx context.Context, conn int, u *User, code int, id int) (out outcome, detail string, err error)
}

// extAuthzCaller sends Envoy ext_authz v3 checks shaped like Envoy's: method, path, host and
// the request headers, the bearer token among them. The ceiling and the pdp get byte-for-byte
// the same requests.
type extAuthzCaller struct {
	clients []authv3.AuthorizationClient
	paths   []string // per catalog code: "/api/p/<code>/things/"
}

func newExtAuthzCaller(conns []*grpc.ClientConn, catalog []string) *extAuthzCaller {
	c := &extAuthzCaller{}
	for _, conn := range conns {
		c.clients = append(c.clients, authv3.NewAuthorizationClient(conn))
	}
	for _, code := range catalog {
		c.paths = append(c.paths, strings.TrimSuffix(routePath(code), "{id}"))
	}
	return c
}

func (c *extAuthzCaller) call(ctx context.Context, conn int, u *User, code int, id int) (outcome, string, error) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method:   "GET",
			Path:     c.paths[code] + strconv.Itoa(id),
			Host:     "app.bench.test",
			Scheme:   "https",
			Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority":    "app.bench.test",
				":method":       "GET",
				"authorization": u.Bearer,
				"accept":        "application/json",
				"user-agent":    "loadgen",
			},
		},
	}}}
	res, err := c.clients[conn].Check(ctx, req)
	if err != nil {
		return outOther, "", err
	}
	switch codes.Code(res.GetStatus().GetCode()) {
	case codes.OK:
		return outAllowed, "", nil
	case codes.PermissionDenied:
		reason := res.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
		if reason == "no_permission" || reason == "explicit_deny" {
			return outDenied, "", nil
		}
		return outOther, "denied: " + reason, nil
	default:
		return outOther, fmt.Sprintf("status %s: %s", codes.Code(res.GetStatus().GetCode()), res.GetStatus().GetMessage()), nil
	}
}

// checkCaller sends neoauthz.v1 Check with the token as subject and the code as permission.
type checkCaller struct {
	clients []authzv1.AuthorizationServiceClient
	catalog []string
}

func newCheckCaller(conns []*grpc.ClientConn, catalog []string) *checkCaller {
	c := &checkCaller{catalog: catalog}
	for _, conn := range conns {
		c.clients = append(c.clients, authzv1.NewAuthorizationServiceClient(conn))
	}
	return c
}

func (c *checkCaller) call(ctx context.Context, conn int, u *User, code int, _ int) (outcome, string, error) {
	res, err := c.clients[conn].Check(ctx, &authzv1.CheckRequest{
		Subject:    &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: strings.TrimPrefix(u.Bearer, "Bearer ")}},
		Permission: c.catalog[code],
	})
	if err != nil {
		return outOther, "", err
	}
	switch {
	case res.GetAllowed():
		return outAllowed, "", nil
	case res.GetReason() == authzv1.Reason_REASON_NO_PERMISSION || res.GetReason() == authzv1.Reason_REASON_EXPLICIT_DENY:
		return outDenied, "", nil
	default:
		return outOther, "reason " + res.GetReason().String(), nil
	}
}

// phaseSpec is one measured phase.
type phaseSpec struct {
	name        string
	concurrency int
	duration    time.Duration
	maxRequests int64
	stream      uint64 // distinguishes the random streams of phases
}

// tally is one worker's counts; merged into a PhaseResult.
type tally struct {
	hist                    Histogram
	allowed, denied, errors uint64
	firstError              string
}

func (t *tally) add(out outcome, detail string, err error, lat time.Duration) {
	t.hist.Record(lat)
	switch {
	case err != nil:
		t.errors++
		if t.firstError == "" {
			t.firstError = status.Convert(err).String()
		}
	case out == outAllowed:
		t.allowed++
	case out == outDenied:
		t.denied++
	default:
		t.errors++
		if t.firstError == "" {
			t.firstError = detail
		}
	}
}

// load is what every phase draws requests from.
type load struct {
	users   []User
	catalog int
	perm    []int32
	seed    uint64
}

// run measures one phase (or one slice of it): spec.concurrency closed-loop workers, until
// spec.duration has passed or spec.maxRequests have been sent. A request under way at the
// deadline is waited for and counted; the context only guards against one that never returns.
func (l *load) run(ctx context.Context, spec phaseSpec, c caller, conns int) (tally, time.Duration) {
	tallies := make([]tally, spec.concurrency)
	var issued atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, spec.duration+30*time.Second)
	defer cancel()
	start := time.Now()
	deadline := start.Add(spec.duration)
	var wg sync.WaitGroup
	for w := range spec.concurrency {
		wg.Go(func() {
			t := &tallies[w]
			p := NewPicker(l.perm, l.seed, spec.stream<<16|uint64(w))
			rng := p.Rand()
			for issued.Add(1) <= spec.maxRequests {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				u := &l.users[p.Next()]
				out, detail, err := c.call(ctx, w%conns, u, pickCode(u, l.catalog, rng), rng.IntN(100_000))
				if err != nil && ctx.Err() != nil {
					return // interrupted: not a request the server failed
				}
				t.add(out, detail, err, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all tally
	for i := range tallies {
		all.merge(&tallies[i])
	}
	return all, elapsed
}

func (t *tally) merge(o *tally) {
	t.hist.Merge(&o.hist)
	t.allowed += o.allowed
	t.denied += o.denied
	t.errors += o.errors
	if t.firstError == "" {
		t.firstError = o.firstError
	}
}

// phaseAcc accumulates the slices of one phase.
type phaseAcc struct {
	name        string
	concurrency int
	t           tally
	elapsed     time.Duration
	cache       *CacheStats
	cpu         time.Duration // of the server process; negative once any slice's is unknown
}

// add adds one slice; cpu is the server's CPU time over it, negative when unknown.
func (a *phaseAcc) add(t *tally, elapsed time.Duration, cache *CacheStats, cpu time.Duration) {
	a.t.merge(t)
	a.elapsed += elapsed
	if cpu < 0 || a.cpu < 0 {
		a.cpu = -1
	} else {
		a.cpu += cpu
	}
	if cache != nil {
		if a.cache == nil {
			a.cache = &CacheStats{}
		}
		*a.cache = a.cache.Add(*cache)
	}
}

func (a *phaseAcc) result() PhaseResult {
	h := &a.t.hist
	n := h.Count()
	var cpu *float64
	if a.cpu >= 0 && n > 0 {
		us := float64(a.cpu.Microseconds()) / float64(n)
		cpu = &us
	}
	return PhaseResult{
		Phase: a.name, Concurrency: a.concurrency, Requests: n, Errors: a.t.errors,
		Allowed: a.t.allowed, Denied: a.t.denied, Seconds: a.elapsed.Seconds(),
		Throughput: float64(n) / a.elapsed.Seconds(),
		P50ms:      ms(h.Quantile(0.50)), P99ms: ms(h.Quantile(0.99)),
		MaxMs: ms(h.Max()), MeanMs: ms(h.Mean()), Cache: a.cache, FirstError: a.t.firstError,
		ServerCPUus: cpu,
	}
}

// warmUp sends one request per user, hottest first, so that a warm phase finds every token
// verified and every permission set cached (with s = 1.1 one request in eight goes to the tail
// beyond the 5,000 hottest users, so warming only the head would leave the "warm" phase
// loading from PostgreSQL). Bounded by limit.
func (l *load) warmUp(ctx context.Context, c caller, conns, concurrency int, limit time.Duration) (tally, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	var next atomic.Int64
	tallies := make([]tally, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(l.seed, 0xa11))
			for ctx.Err() == nil {
				rank := next.Add(1) - 1
				if rank >= int64(len(l.perm)) {
					return
				}
				u := &l.users[l.perm[rank]]
				t0 := time.Now()
				out, detail, err := c.call(ctx, w%conns, u, pickCode(u, l.catalog, rng), 1)
				tallies[w].add(out, detail, err, time.Since(t0))
			}
		})
	}
	wg.Wait()
	var all tally
	for i := range tallies {
		all.merge(&tallies[i])
	}
	if ctx.Err() != nil && int(all.hist.Count()) < len(l.perm) {
		all.errors++
		if all.firstError == "" {
			all.firstError = fmt.Sprintf("warm-up stopped after %s with %d of %d users", limit, all.hist.Count(), len(l.perm))
		}
	}
	return all, time.Since(start)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// CacheStats are the pdp's permission-set cache counters over a phase, read from its /metrics.
type CacheStats struct {
	L1Hits   float64 `json:"l1_hits"`
	L1Misses float64 `json:"l1_misses"`
	L2Hits   float64 `json:"redis_hits"`
	Loads    float64 `json:"database_loads"`
}

// Add returns the sums of a's and b's counters (e.g. of several pdps).
func (a CacheStats) Add(b CacheStats) CacheStats {
	return CacheStats{a.L1Hits + b.L1Hits, a.L1Misses + b.L1Misses, a.L2Hits + b.L2Hits, a.Loads + b.Loads}
}

func (a CacheStats) sub(b CacheStats) CacheStats {
	return CacheStats{a.L1Hits - b.L1Hits, a.L1Misses - b.L1Misses, a.L2Hits - b.L2Hits, a.Loads - b.Loads}
}

// ScrapeCache reads the permission-set cache counters from the /metrics of the pdp at httpAddr.
func ScrapeCache(ctx context.Context, httpAddr string) (CacheStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return CacheStats{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return CacheStats{}, err
	}
	defer res.Body.Close()
	var s CacheStats
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		labels, value, ok := metricLine(line)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(line, "cache_operations_total{") && has(labels, `operation="get"`, `result="hit"`, `tier="l1"`):
			s.L1Hits += value
		case strings.HasPrefix(line, "cache_operations_total{") && has(labels, `operation="get"`, `tier="l1"`) && !has(labels, `result="hit"`):
			s.L1Misses += value
		case strings.HasPrefix(line, "cache_operations_total{") && has(labels, `operation="get"`, `result="hit"`, `tier="l2"`):
			s.L2Hits += value
		case strings.HasPrefix(line, "cache_loads_total{"):
			s.Loads += value
		}
	}
	return s, sc.Err()
}

func metricLine(line string) (labels string, value float64, ok bool) {
	open, end := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
	if open < 0 || end < open {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
	return line[open+1 : end], v, err == nil
}

func has(labels string, want ...string) bool {
	for _, w := range want {
		if !strings.Contains(labels, w) {
			return false
		}
	}
	return true
}
