package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/neofast/neoauthz/internal/authn/authntest"
	"github.com/neofast/neoauthz/internal/daemon"
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
	cacheBytes                            int64
	issuer                                *authntest.Issuer
	log                                   *slog.Logger
}

// pdpInstance is a pdp served in process by daemon.Serve.
type pdpInstance struct {
	grpcAddr, httpAddr string
	cancel             context.CancelFunc
	done               chan error
}

// startPDP starts a fresh pdp — empty in-process caches, new connection pools — and waits
// until its gRPC health says SERVING.
func startPDP(ctx context.Context, env pdpEnv) (*pdpInstance, error) {
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = env.adminURL
	cfg.SecretKey = env.secretKey
	cfg.RedisURL = env.redisURL
	cfg.CacheMaxBytes = env.cacheBytes
	cfg.TrustedIssuers = []string{env.issuer.URL()}
	cfg.Audiences = []string{audience}
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Server.RouteTablePath = env.routes
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = gl.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &pdpInstance{grpcAddr: gl.Addr().String(), httpAddr: hl.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- daemon.Serve(sctx, cfg, env.log, gl, hl) }()

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
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p, nil
		}
		select {
		case err := <-p.done:
			cancel()
			return nil, fmt.Errorf("the pdp stopped while starting: %w", err)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("the pdp did not become ready in 30s (last health check: %w)", err)
		}
	}
}

// stop shuts the instance down and waits for it (bounded by the daemon's shutdown timeout).
func (p *pdpInstance) stop() {
	p.cancel()
	select {
	case err := <-p.done:
		_ = err // the daemon's own log has said what went wrong, if anything
	case <-time.After(20 * time.Second):
	}
}

// nopAuthz is the ceiling: an ext_authz server that allows everything at once, without even
// looking at the request. Whatever throughput it reaches is what the client, gRPC and the
// loopback network allow on this machine.
type nopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

var nopOK = &authv3.CheckResponse{Status: &rpcstatus.Status{}}

func (nopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return nopOK, nil
}

// startCeiling serves nopAuthz on a loopback port with a default gRPC server, which is what the
// pdp's server is too (server.New adds no options without TLS).
func startCeiling() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, nopAuthz{})
	go func() { _ = s.Serve(l) }()
	return l.Addr().String(), s.Stop, nil
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
