package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/authn/authntest"
)

// audience is the aud of every minted token and the pdp's accepted audience.
const audience = "neoauthz"

// startIssuer starts a Keycloak-shaped issuer with one realm per tenant. Realm keys are
// generated in parallel: an RSA realm costs two 2048-bit keys.
func startIssuer(ctx context.Context, realms []string, alg string) (*authntest.Issuer, error) {
	iss := authntest.NewIssuer()
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	errs := make([]error, len(realms))
	var wg sync.WaitGroup
	for i, r := range realms {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() == nil {
				_, errs[i] = iss.AddRealm(r, alg)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		iss.Close()
		return nil, err
	}
	return iss, nil
}

// mintTokens gives every user a token of its tenant's realm, valid well beyond the run, on all
// cores (RS256 signing is about 1 ms a token).
func mintTokens(ctx context.Context, iss *authntest.Issuer, ds *Dataset) error {
	exp := time.Now().Add(2 * time.Hour).Unix()
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ds.Users) && ctx.Err() == nil; i += workers {
				u := &ds.Users[i]
				tok, err := iss.Mint(ds.Tenants[u.Tenant], map[string]any{
					"sub": u.Subject, "aud": audience, "azp": "loadgen", "exp": exp,
					"preferred_username": u.Subject,
				})
				if err != nil {
					errs[w] = err
					return
				}
				u.Bearer = "Bearer " + tok
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// routePath is the request path that the route table maps to catalog code i.
func routePath(code string) string { return "/api/p/" + code + "/things/{id}" }

// writeRoutes writes the route table: GET /api/p/<code>/things/{id} → <code> for every catalog
// code (a table of 150 routes, as a real API has), plus the health check as a public route.
func writeRoutes(dir string, catalog []string) (string, error) {
	type route struct {
		Method     string `json:"method"`
		Path       string `json:"path"`
		Permission string `json:"permission,omitempty"`
		Public     bool   `json:"public,omitempty"`
	}
	doc := struct {
		Routes []route `json:"routes"`
	}{}
	doc.Routes = append(doc.Routes, route{Method: "GET", Path: "/healthz", Public: true})
	for _, code := range catalog {
		doc.Routes = append(doc.Routes, route{Method: "GET", Path: routePath(code), Permission: code})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "routes.json")
	return path, os.WriteFile(path, b, 0o600)
}

// benchRedisURL points REDIS_URL at the logical database db. The daemon's cache key prefix is
// fixed, so a database of our own is what keeps the bench's keys (and its FLUSHDB) away from
// everyone else's.
func benchRedisURL(raw string, db int) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return "", errors.New("REDIS_URL must be a standalone redis:// or rediss:// URL (loadgen uses a logical database of its own)")
	}
	u.Path = "/" + strconv.Itoa(db)
	u.RawPath = ""
	q := u.Query()
	q.Del("db")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func flushRedis(ctx context.Context, redisURL string) error {
	if redisURL == "" {
		return nil
	}
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		return errors.New("REDIS_URL does not parse")
	}
	c := redis.NewClient(o)
	defer c.Close()
	return c.FlushDB(ctx).Err()
}

// pdpEnv is what every pdp instance of a run shares.
type pdpEnv struct {
	adminURL, secretKey, redisURL, routes string
	cacheBytes, memoryLimit               int64
	cgroupMemory                          int64 // run the pdp in a memory cgroup of this limit (0: no)
	issuer                                *authntest.Issuer
	verbose                               bool
	streamWorkers                         int
	decisionLog                           bool      // record decisions (the pdp's default) or not
	logs                                  io.Writer // the pdp's log lines
}

// startPDP starts a fresh pdp in a child process — empty in-process caches, new connection
// pools — and waits until its gRPC health says SERVING.
func startPDP(ctx context.Context, env pdpEnv) (*childProc, error) {
	spec := childSpec{Mode: modePDP, AdminURL: env.adminURL, SecretKey: env.secretKey, RedisURL: env.redisURL,
		Routes: env.routes, Issuers: []string{env.issuer.URL()}, Verbose: env.verbose, StreamWorkers: env.streamWorkers,
		NoDecisionLog: !env.decisionLog, CacheBytes: env.cacheBytes, MemoryLimit: env.memoryLimit,
		AutoMemoryLimit: env.cgroupMemory > 0 && env.memoryLimit == 0}
	if _, err := spec.pdpConfig(); err != nil {
		return nil, err
	}
	var cg *memoryCgroup
	if env.cgroupMemory > 0 {
		var err error
		name := fmt.Sprintf("neoauthz-loadgen-%d-%d", os.Getpid(), cgroupSeq.Add(1))
		if cg, err = newMemoryCgroup(name, env.cgroupMemory); err != nil {
			return nil, err
		}
	}
	return startServing(ctx, spec, env.logs, cg)
}

// cgroupSeq numbers the memory cgroups a run makes.
var cgroupSeq atomic.Int64

// startCeiling starts the ceiling, nopAuthz, in a child process.
func startCeiling(ctx context.Context, logs io.Writer) (*childProc, error) {
	return startServing(ctx, childSpec{Mode: modeCeiling}, logs, nil)
}

// startServing starts a child (in cgroup cg, when not nil) and waits until its gRPC health
// says SERVING (the ceiling serves no health service: for it, any answer will do).
func startServing(ctx context.Context, spec childSpec, logs io.Writer, cg *memoryCgroup) (*childProc, error) {
	p, err := startChild(spec, logs, cg)
	if err != nil {
		if cg != nil {
			cg.remove()
		}
		return nil, err
	}
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.stop()
		return nil, err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		res, err := hc.Check(rctx, &healthpb.HealthCheckRequest{})
		rcancel()
		if (err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING) ||
			(spec.Mode == modeCeiling && status.Code(err) == codes.Unimplemented) {
			if cg != nil {
				cg.removeBinary() // the serving child holds it open
			}
			return p, nil
		}
		if exitErr, ok := p.exited(); ok {
			p.stop()
			return nil, fmt.Errorf("the %s stopped while starting: %w", spec.Mode, exitErr)
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("the %s did not become ready in 30s (last health check: %w)", spec.Mode, err)
		}
	}
}

// nopAuthz is the ceiling: an ext_authz server that allows everything at once, without even
// looking at the request. Whatever throughput it reaches is what the client, gRPC and the
// loopback network allow on this machine. It is served by a default gRPC server.
type nopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

var nopOK = &authv3.CheckResponse{Status: &rpcstatus.Status{}}

func (nopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return nopOK, nil
}

// dial opens n client connections to addr. Workers share them round-robin.
func dial(addr string, n int) ([]*grpc.ClientConn, func(), error) {
	conns := make([]*grpc.ClientConn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		c.Connect()
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}
