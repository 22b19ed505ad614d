package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// TokenValidator verifies bearer tokens; *authn.Validator implements it.
type TokenValidator interface {
	Validate(ctx context.Context, token string) (authn.Identity, error)
}

// Deps are what the API runs on. All are required except Log.
type Deps struct {
	Admin     *pgxpool.Pool
	Registry  *registry.Store
	Fleet     *fleet.Runner
	Tenants   *tenancy.Service
	Store     *pgstore.Store
	Validator TokenValidator
	Log       *slog.Logger
	// Now is the clock of authorization decisions; default time.Now.
	Now func() time.Time
}

// Server serves the admin REST API. Build it with New; it is safe for concurrent use.
type Server struct {
	Deps
	table []route
	mux   *http.ServeMux
	// registered lists every pattern given to mux, in order.
	registered []string
	metrics    *httpMetrics
	outbox     outboxMetrics
	promReg    *prometheus.Registry
	openapi    []byte
	docs       []byte

	poolsMu sync.Mutex
	pools   map[poolKey]*pgxpool.Pool // tenant-database write pools

	jobs    sync.WaitGroup  // background migration jobs
	baseCtx context.Context // set by Serve: background jobs stop with the server
}

type poolKey struct{ conn, database string }

// New builds the server, its mux and its documents from the route table.
func New(d Deps) (*Server, error) {
	if d.Admin == nil || d.Registry == nil || d.Fleet == nil || d.Tenants == nil || d.Store == nil || d.Validator == nil {
		return nil, errors.New("adminapi: Admin, Registry, Fleet, Tenants, Store and Validator are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Server{Deps: d, mux: http.NewServeMux(), promReg: prometheus.NewRegistry(), pools: map[poolKey]*pgxpool.Pool{}}
	var err error
	if s.metrics, err = newHTTPMetrics(s.promReg); err != nil {
		return nil, err
	}
	if s.outbox, err = newOutboxMetrics(s.promReg); err != nil {
		return nil, err
	}
	if err := s.promReg.Register(stateCollector{s: s}); err != nil {
		return nil, err
	}
	s.table = s.allRoutes()
	for i := range s.table {
		rt := &s.table[i]
		s.register(rt.pattern(), s.wrap(rt))
	}
	// Anything the table does not match still gets the JSON error envelope and is counted.
	s.register(fallbackPattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := requestID(r)
		w.Header().Set(HeaderRequestID, rid)
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		start := time.Now()
		writeError(rec, rid, errNotFound("no route "+r.Method+" "+r.URL.Path))
		s.metrics.observe("unmatched", r.Method, rec.status, time.Since(start))
	}))
	if s.openapi, err = s.buildOpenAPI(); err != nil {
		return nil, err
	}
	s.docs = s.buildDocs()
	return s, nil
}

// fallbackPattern answers what no route matches (404 in the envelope).
const fallbackPattern = "/"

// register is the only way a handler reaches the mux, so tests can compare what is served
// with what is documented.
func (s *Server) register(pattern string, h http.Handler) {
	s.registered = append(s.registered, pattern)
	s.mux.Handle(pattern, h)
}

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Close waits for background migration jobs and closes the tenant write pools.
func (s *Server) Close() {
	s.jobs.Wait()
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	for k, p := range s.pools {
		p.Close()
		delete(s.pools, k)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// wrap turns a route into a handler: request id, metrics, authentication, authorization, the
// handler, and the mapping of its error to the envelope.
func (s *Server) wrap(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := requestID(r)
		w.Header().Set(HeaderRequestID, rid)
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		c := &call{w: rec, r: r, s: s, route: rt, requestID: rid,
			log: s.Log.With("request_id", rid, "route", rt.pattern())}
		defer func() {
			if p := recover(); p != nil {
				// A panic is a bug: answer 500 without the stack, log it with the request id.
				c.log.Error("handler panic", "panic", fmt.Sprint(p))
				if !c.written {
					writeError(rec, rid, &apiError{Status: 500, Code: CodeInternal, Message: "internal error"})
				}
			}
			s.metrics.observe(rt.pattern(), r.Method, rec.status, time.Since(start))
		}()
		err := s.authorize(c)
		if err == nil {
			err = rt.handle(c)
		}
		if err != nil {
			ae, known := toAPIError(err)
			if !known {
				c.log.Error("request failed", "err", err)
			}
			if c.written {
				return
			}
			c.written = true
			writeError(rec, rid, ae)
		}
	})
}

// httpMetrics are the API's Prometheus collectors. route is the table's pattern, never the
// raw path, so series stay bounded whatever clients send.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Admin API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Admin API request latency by route pattern.",
			// Reads take milliseconds; provisioning a tenant takes up to seconds.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
