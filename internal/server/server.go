package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	"github.com/neofast/neoauthz/internal/pprof"
	"github.com/neofast/neoauthz/internal/routes"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// Decider is what the transports need from the decision service (*pdp.Service).
type Decider interface {
	// SubjectFromToken verifies a bearer token; its errors wrap pdp.ErrUnauthenticated when
	// the token is not acceptable, anything else means the subject could not be established.
	SubjectFromToken(ctx context.Context, token string) (pdp.Subject, error)
	// SubjectFromPrincipal resolves a principal asserted by a trusted caller.
	SubjectFromPrincipal(ctx context.Context, tenant, user string) (pdp.Subject, error)
	// Await prepares for requests carrying a consistency token, before their subject is
	// established; its errors wrap pdp.ErrInvalidRequest for a token naming data that does
	// not exist, anything else means "could not decide".
	Await(ctx context.Context, tok consistency.Token) error
	Check(ctx context.Context, sub pdp.Subject, req pdp.Request) (pdp.Result, error)
	CheckBulk(ctx context.Context, sub pdp.Subject, reqs []pdp.Request) ([]pdp.Result, error)
	ListPermissions(ctx context.Context, sub pdp.Subject, at consistency.Token) ([]string, consistency.Token, error)
	// Ready returns nil when the service can decide.
	Ready(ctx context.Context) error
	// Health reports each dependency.
	Health(ctx context.Context) map[string]pdp.DependencyHealth
}

// Server is the pdp's transports: one gRPC server (neoauthz.v1, Envoy ext_authz v3, health,
// reflection) and one HTTP handler (forward auth, /health, /metrics) over one Decider.
type Server struct {
	cfg     Config
	dec     Decider
	routes  *routes.Table
	host    hostPattern
	fwd     convention          // forward auth's header convention; zero: /auth is off
	trusted map[string]struct{} // TrustedClientIdentities
	log     *slog.Logger
	metrics *metrics
	authzen *authzenState // nil: the AuthZEN API is not served
	// decisions records decisions when set (SetDecisionLog); nil records nothing.
	decisions DecisionLog
	ext       extResponses

	grpc    *grpc.Server
	health  *health.Server
	http    http.Handler
	ops     http.Handler // /health and /metrics
	serving atomic.Bool  // what the health endpoints report, besides Ready

	shutdownOnce sync.Once
	shuttingDown atomic.Bool
}

// Server is Envoy's ext_authz service itself (Check); neoauthz.v1 is authzService.
var _ authv3.AuthorizationServer = (*Server)(nil)

// healthServices are the names gRPC health reports on, besides the server-wide "".
var healthServices = []string{
	"",
	authzv1.AuthorizationService_ServiceDesc.ServiceName,
	"envoy.service.auth.v3.Authorization",
}

// New builds the server. cfg must be valid (Validate); table may be nil (no route table:
// ext_authz and forward auth only allow requests whose permission is pinned by trusted
// configuration); logger nil discards logs; reg nil registers the metrics in a new registry.
// /metrics serves reg when it is also a prometheus.Gatherer (a *prometheus.Registry) and
// prometheus.DefaultGatherer otherwise.
func New(cfg Config, svc Decider, table *routes.Table, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if svc == nil {
		return nil, errors.New("server: nil decider")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	host, _ := parseHostPattern(cfg.TenantHostPattern)                         // checked by Validate
	fwd, _ := newConvention(cfg.ForwardAuthHeaders, cfg.ForwardAuthHostHeader) // checked by Validate
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		dec:     svc,
		routes:  table,
		host:    host,
		fwd:     fwd,
		trusted: make(map[string]struct{}, len(cfg.TrustedClientIdentities)),
		log:     logger,
		metrics: m,
		health:  health.NewServer(),
		ext:     newExtResponses(&cfg),
	}
	for _, id := range cfg.TrustedClientIdentities {
		s.trusted[id] = struct{}{}
	}

	var opts []grpc.ServerOption
	tlsCfg, err := cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(unixOrTLS{credentials.NewTLS(tlsCfg)}))
	}
	if n := cfg.streamWorkers(); n > 0 {
		opts = append(opts, grpc.NumStreamWorkers(n))
	}
	// ext_authz requests decoded into what the handler reads, answers' dynamic metadata
	// encoded without reflection (codec.go).
	opts = append(opts, grpc.ForceServerCodecV2(newExtAuthzCodec()))
	s.grpc = grpc.NewServer(opts...)
	authzv1.RegisterAuthorizationServiceServer(s.grpc, authzService{s: s})
	s.grpc.RegisterService(&extAuthzService, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.setHealth(false) // until the decision service first reports ready
	// A second server on the same registry (tests) keeps the first one's gauge.
	if _, err := register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pdp_serving",
		Help: "1 while the pdp is ready and serving (what gRPC health and /health report), else 0."},
		func() float64 {
			if s.serving.Load() && !s.shuttingDown.Load() {
				return 1
			}
			return 0
		})); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}

	gatherer := prometheus.DefaultGatherer
	if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	ops := http.NewServeMux()
	ops.HandleFunc("GET /health", s.healthHTTP)
	ops.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		pprof.Register(ops)
	}
	s.ops = ops
	mux := http.NewServeMux()
	if cfg.MetricsAddr == "" {
		mux.Handle("/health", ops)
		mux.Handle("/metrics", ops)
		if cfg.Pprof {
			mux.Handle(pprof.Prefix, ops)
		}
	}
	if !fwd.enabled() {
		mux.HandleFunc("/auth", forwardAuthOff)
	}
	if cfg.AuthZENConfigPath != "" {
		az, err := LoadAuthZENConfig(cfg.AuthZENConfigPath)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.authzen = newAuthZEN(az, svc)
		s.registerAuthZEN(mux)
	}
	s.http = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Before the mux: under envoy-http the path below /auth is the client's, which the
		// mux would clean and redirect instead of letting the route table judge it.
		if fwd.enabled() && fwd.isForwardAuth(r) {
			s.forwardAuth(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return s, nil
}

// GRPCServer returns the gRPC server with every service registered, for callers that serve
// it on listeners of their own.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// AuthorizationService returns the neoauthz.v1 service the gRPC listener serves, to call in
// process (as Check is Envoy's).
func (s *Server) AuthorizationService() authzv1.AuthorizationServiceServer { return authzService{s: s} }

// HTTPHandler returns the HTTP handler: /auth (forward auth), the AuthZEN API when configured,
// and /health and /metrics unless Config.MetricsAddr moves them to OpsHandler's listener.
func (s *Server) HTTPHandler() http.Handler { return s.http }

// OpsHandler returns the handler of /health and /metrics alone.
func (s *Server) OpsHandler() http.Handler { return s.ops }

// Listeners are the sockets Serve serves on; a nil listener is not served.
type Listeners struct {
	GRPC net.Listener // neoauthz.v1, Envoy ext_authz, gRPC health, reflection
	HTTP net.Listener // HTTPHandler
	// Metrics serves OpsHandler; the cmd opens it when Config.MetricsAddr is set.
	Metrics net.Listener
}

// SetServing sets what gRPC health and /health report. Serve sets it to true once the decision
// service is first ready; after shutdown has begun it has no effect.
func (s *Server) SetServing(serving bool) { s.setHealth(serving) }

func (s *Server) setHealth(serving bool) {
	if s.shuttingDown.Load() {
		return
	}
	s.serving.Store(serving)
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
}

// Serve serves gRPC on grpcLis and HTTP on httpLis: ServeListeners without a metrics
// listener.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	return s.ServeListeners(ctx, Listeners{GRPC: grpcLis, HTTP: httpLis})
}

// ServeListeners serves gRPC on l.GRPC (and on Config.UnixSocket when set), HTTP on l.HTTP
// and /health and /metrics on l.Metrics until ctx ends or a listener fails, then shuts down
// gracefully (see shutdown). A nil listener is not served. It returns nil after a shutdown
// caused by ctx, otherwise the first error. It takes ownership of the listeners and may be
// called once.
func (s *Server) ServeListeners(ctx context.Context, l Listeners) error {
	grpcLis, httpLis := l.GRPC, l.HTTP
	var unixLis net.Listener
	if s.cfg.UnixSocket != "" {
		var err error
		if unixLis, err = listenUnix(s.cfg.UnixSocket); err != nil {
			closeAll(grpcLis, httpLis, l.Metrics)
			return err
		}
	}
	if s.cfg.HTTPTLS && httpLis != nil {
		tlsCfg, err := s.cfg.serverTLS()
		if err != nil {
			closeAll(grpcLis, httpLis, unixLis, l.Metrics)
			return err
		}
		if tlsCfg.ClientAuth == tls.RequireAndVerifyClientCert {
			// Forward-auth proxies and health probes need not carry certificates; a certificate
			// that is sent is verified, and only then can it name an AuthZEN PEP.
			tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
		httpLis = tls.NewListener(httpLis, tlsCfg)
	}
	newHTTP := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	httpSrv, opsSrv := newHTTP(s.http), newHTTP(s.ops)

	g, gctx := errgroup.WithContext(ctx)
	for _, lis := range []net.Listener{grpcLis, unixLis} {
		if lis == nil {
			continue
		}
		g.Go(func() error {
			// ErrServerStopped: ctx ended before this listener started; not a failure.
			if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("server: grpc on %s: %w", lis.Addr(), err)
			}
			return nil
		})
	}
	for _, hl := range []struct {
		srv *http.Server
		lis net.Listener
	}{{httpSrv, httpLis}, {opsSrv, l.Metrics}} {
		if hl.lis == nil {
			continue
		}
		g.Go(func() error {
			if err := hl.srv.Serve(hl.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("server: http on %s: %w", hl.lis.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		s.pollReady(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done() // ctx ended, or a listener failed
		s.shutdown(httpSrv, opsSrv)
		return nil
	})
	s.log.Info("pdp serving", "grpc", addrOf(grpcLis), "unix", addrOf(unixLis), "http", addrOf(httpLis), "metrics", addrOf(l.Metrics))
	if s.fwd.enabled() {
		s.log.Info("forward auth on /auth", "headers", s.fwd.name, "reads", s.fwd.describe())
	} else {
		s.log.Info("forward auth (/auth) is off: set -forward-auth-headers (" + EnvForwardAuthHeaders +
			") to " + strings.Join(Conventions, ", ") + " to serve it behind that proxy")
	}
	err := g.Wait()
	s.log.Info("pdp stopped", "error", err)
	return err
}

// pollReady asks the decision service every ReadinessPollInterval whether it can decide and
// keeps gRPC health in step: NOT_SERVING until it first can, and again while it cannot (an
// instance that lost its admin database is taken out of a pool whose other members may still
// decide).
func (s *Server) pollReady(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReadinessPollInterval)
	defer t.Stop()
	// Edge-triggered: health follows changes of readiness (down when the admin database stops
	// answering, up when it is back), and a SetServing in between stands until the next change.
	known, ready := false, false
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadinessPollInterval)
		err := s.dec.Ready(rctx)
		cancel()
		if now := err == nil; !known || now != ready {
			known, ready = true, now
			s.setHealth(ready)
			if ready {
				s.log.Info("pdp ready")
			} else {
				s.log.Warn("pdp not ready: gRPC health is NOT_SERVING", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// shutdown follows the usual order: report NOT_SERVING first so that load balancers and
// Envoy's health checks stop sending new work, then drain gRPC (GracefulStop, falling back to
// Stop at ShutdownTimeout) and HTTP within the same deadline.
func (s *Server) shutdown(httpSrvs ...*http.Server) {
	s.shutdownOnce.Do(func() {
		s.setHealth(false)
		s.shuttingDown.Store(true)
		s.health.Shutdown() // NOT_SERVING for good; later SetServingStatus calls are ignored
		s.log.Info("pdp shutting down", "timeout", s.cfg.ShutdownTimeout)

		deadline, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-deadline.Done():
				s.log.Warn("grpc graceful stop timed out; closing connections")
				s.grpc.Stop()
				<-done
			}
		})
		for _, httpSrv := range httpSrvs {
			wg.Go(func() {
				if err := httpSrv.Shutdown(deadline); err != nil {
					s.log.Warn("http shutdown timed out; closing connections", "error", err)
					_ = httpSrv.Close()
				}
			})
		}
		wg.Wait()
	})
}

// listenUnix listens on a Unix socket path, replacing a stale socket file left by a previous
// run but never one another process still serves on.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("server: unix socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("server: unix socket %s: in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("server: unix socket %s: remove stale socket: %w", path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("server: unix socket: %w", err)
	}
	// Every caller on this socket is trusted to send principals: owner and group only.
	if err := os.Chmod(path, 0o660); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("server: unix socket %s: %w", path, err)
	}
	return lis, nil
}

func closeAll(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			_ = l.Close()
		}
	}
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
