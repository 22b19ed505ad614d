package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config. They match envoy/envoy.yaml (the pdp cluster on 127.0.0.1:9191 and the
// identity headers its decoder_header_mutation_rules let through).
const (
	DefaultGRPCAddr              = ":9191"
	DefaultHTTPAddr              = ":8181"
	DefaultTenantHeader          = "x-neoauthz-tenant"
	DefaultUserHeader            = "x-neoauthz-user"
	DefaultDecisionIDHeader      = "x-neoauthz-decision-id"
	DefaultShutdownTimeout       = 10 * time.Second
	DefaultReadinessPollInterval = time.Second
)

// MaxBulkItems is the most items a CheckBulk request may carry (neoauthz.v1 contract).
const MaxBulkItems = 100

// Config is the pdp's transport configuration. The zero value is not usable: start from
// DefaultConfig, then apply flags (RegisterFlags) and call Validate.
type Config struct {
	// GRPCAddr is the TCP address of the gRPC server (neoauthz.v1, Envoy ext_authz, health,
	// reflection). The cmd listens on it and hands the listener to Serve.
	GRPCAddr string
	// HTTPAddr is the TCP address of the HTTP server (/auth forward auth, and /health and
	// /metrics unless MetricsAddr moves them).
	HTTPAddr string
	// MetricsAddr, when set, is a separate TCP address serving /health and /metrics, which
	// HTTPAddr then no longer serves: the port a proxy reaches for /auth need not expose the
	// pdp's internals, and a scraper need not reach the port /auth is on.
	MetricsAddr string
	// UnixSocket, when set, is the path of an extra gRPC listener for local callers. Every
	// connection over it counts as trusted (it may send principal subjects), so access is
	// governed by the socket file's permissions: Serve creates it with mode 0660.
	UnixSocket string

	// TLSCertFile and TLSKeyFile, when set, make the gRPC TCP listener speak TLS. The Unix
	// socket stays plaintext: the kernel already tells us who is on the other end.
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile, when set, makes the gRPC TCP listener require a client certificate
	// signed by one of these CAs (mTLS). Only then can TrustedClientIdentities match.
	TLSClientCAFile string
	// TrustedClientIdentities lists the mTLS client identities (certificate subject CN, DNS
	// SAN or URI SAN such as a SPIFFE id) that may send principal subjects instead of tokens.
	TrustedClientIdentities []string

	// RouteTablePath is the route table file (routes.LoadFile) the cmd loads and passes to New;
	// empty means no table: only routes with a pinned permission can be allowed.
	RouteTablePath string
	// TenantHostPattern binds the tenant a request serves from its host, e.g.
	// "{tenant}.app.example.com". Empty disables host binding. A host that does not fit the
	// pattern binds nothing.
	TenantHostPattern string

	// TenantHeader, UserHeader and DecisionIDHeader name the identity headers set on allowed
	// requests (the tenant slug, the user's external id, the decision id). Envoy must allow
	// exactly these in decoder_header_mutation_rules.
	TenantHeader     string
	UserHeader       string
	DecisionIDHeader string

	// ForwardAuthHeaders is the header convention forward auth reads the original request
	// from: ConventionNginx, ConventionTraefik, ConventionCaddy or ConventionEnvoyHTTP. The pdp
	// reads that convention's headers only, and refuses (400) a request in which another
	// convention's headers disagree. Empty: /auth is not served, since the pdp cannot know
	// which headers the proxy in front of it overwrites and which it passes from the client.
	ForwardAuthHeaders string
	// ForwardAuthHostHeader names the header carrying the original host under the nginx
	// convention (nginx has no standard one); empty means DefaultNginxHostHeader. The nginx
	// configuration must set it with proxy_set_header.
	ForwardAuthHostHeader string

	// TrustForwardedPermission lets forward auth take the permission from the
	// X-Neoauthz-Permission request header. Off by default: enable it only when every request
	// reaching /auth comes from a proxy that sets (and never passes through) that header,
	// because whoever sets it chooses what is checked.
	TrustForwardedPermission bool

	// AuthZENConfigPath is the AuthZEN file (LoadAuthZENConfig): the PEPs trusted to ask and
	// the mapping of AuthZEN requests onto checks. Empty: the AuthZEN API is not served.
	AuthZENConfigPath string
	// HTTPTLS serves the HTTP port over TLS with the gRPC certificate (TLSCertFile); with
	// TLSClientCAFile, client certificates are verified when sent, so AuthZEN PEPs can be
	// identified by mTLS. Forward-auth proxies then need https too.
	HTTPTLS bool
	// Pprof serves Go's profiling endpoints under /debug/pprof/ on the HTTP address. Off by
	// default: a profile shows what the process is doing, so only operators may reach it.
	Pprof bool

	// ExtAuthzMetadata says what an ext_authz answer carries in its dynamic metadata (the
	// envoy.filters.http.ext_authz namespace, for access logs and later filters):
	// MetadataMinimal (decision_id, reason, and on an allow the version and the consistency
	// token) or MetadataFull
	// (also tenant and user on an allow, which the identity headers already carry). Empty
	// means MetadataMinimal.
	ExtAuthzMetadata string

	// GRPCStreamWorkers is how many goroutines serve gRPC streams, reused from one request to
	// the next (grpc.NumStreamWorkers): a reused goroutine keeps the stack the deep decision
	// path grew, where a new one per request grows (copies) it again. 0 means
	// DefaultStreamWorkersPerCPU × GOMAXPROCS; -1 means a new goroutine per stream (gRPC's own
	// default). A stream arriving while every worker is busy gets a goroutine of its own, so no
	// request ever waits for a worker; with only GOMAXPROCS workers that is most streams under
	// concurrent load, hence several workers per CPU.
	GRPCStreamWorkers int

	// ShutdownTimeout bounds graceful shutdown: in-flight RPCs and HTTP requests get this long
	// before connections are closed.
	ShutdownTimeout time.Duration
	// ReadinessPollInterval is how often Serve asks the decision service whether it is ready
	// until it first is; gRPC health reports NOT_SERVING until then.
	ReadinessPollInterval time.Duration

	// envErrs collects environment values RegisterFlags could not parse, reported by Validate
	// (RegisterFlags has no error result and must not panic).
	envErrs []error
}

// DefaultConfig returns a Config with every default applied.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:              DefaultGRPCAddr,
		HTTPAddr:              DefaultHTTPAddr,
		TenantHeader:          DefaultTenantHeader,
		UserHeader:            DefaultUserHeader,
		DecisionIDHeader:      DefaultDecisionIDHeader,
		ExtAuthzMetadata:      MetadataMinimal,
		ShutdownTimeout:       DefaultShutdownTimeout,
		ReadinessPollInterval: DefaultReadinessPollInterval,
	}
}

// Environment variables read by RegisterFlags as flag defaults.
const (
	EnvGRPCAddr                 = "NEOAUTHZ_GRPC_ADDR"
	EnvHTTPAddr                 = "NEOAUTHZ_HTTP_ADDR"
	EnvMetricsAddr              = "NEOAUTHZ_METRICS_ADDR"
	EnvForwardAuthHeaders       = "NEOAUTHZ_FORWARD_AUTH_HEADERS"
	EnvForwardAuthHostHeader    = "NEOAUTHZ_FORWARD_AUTH_HOST_HEADER"
	EnvUnixSocket               = "NEOAUTHZ_UNIX_SOCKET"
	EnvRoutes                   = "NEOAUTHZ_ROUTES"
	EnvTenantHostPattern        = "NEOAUTHZ_TENANT_HOST_PATTERN"
	EnvTLSCert                  = "NEOAUTHZ_TLS_CERT"
	EnvTLSKey                   = "NEOAUTHZ_TLS_KEY"
	EnvTLSClientCA              = "NEOAUTHZ_TLS_CLIENT_CA"
	EnvTrustedClients           = "NEOAUTHZ_TRUSTED_CLIENTS"
	EnvTenantHeader             = "NEOAUTHZ_TENANT_HEADER"
	EnvUserHeader               = "NEOAUTHZ_USER_HEADER"
	EnvDecisionIDHeader         = "NEOAUTHZ_DECISION_ID_HEADER"
	EnvTrustForwardedPermission = "NEOAUTHZ_TRUST_FORWARDED_PERMISSION"
	EnvShutdownTimeout          = "NEOAUTHZ_SHUTDOWN_TIMEOUT"
	EnvAuthZENConfig            = "NEOAUTHZ_AUTHZEN_CONFIG"
	EnvHTTPTLS                  = "NEOAUTHZ_HTTP_TLS"
	EnvPprof                    = "NEOAUTHZ_PPROF"
	EnvGRPCStreamWorkers        = "NEOAUTHZ_GRPC_STREAM_WORKERS"
	EnvExtAuthzMetadata         = "NEOAUTHZ_EXT_AUTHZ_METADATA"
)

// ExtAuthzMetadata values.
const (
	MetadataMinimal = "minimal"
	MetadataFull    = "full"
)

// RegisterFlags defines one flag per field on fs. A flag's default is the field's current
// value, overridden by its environment variable when that is set, so the precedence is
// flag > environment > c's value. Environment values that do not parse are reported by Validate.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	str := func(p *string, name, env, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" (env "+env+")")
	}
	str(&c.GRPCAddr, "grpc-addr", EnvGRPCAddr, "gRPC listen address (neoauthz.v1, ext_authz, health)")
	str(&c.HTTPAddr, "http-addr", EnvHTTPAddr, "HTTP listen address (/auth, and /health, /metrics unless -metrics-addr is set)")
	str(&c.MetricsAddr, "metrics-addr", EnvMetricsAddr, "separate listen address for /health and /metrics (empty: the HTTP address)")
	str(&c.ForwardAuthHeaders, "forward-auth-headers", EnvForwardAuthHeaders, "forward auth header convention: "+strings.Join(Conventions, ", ")+" (empty: /auth is off)")
	str(&c.ForwardAuthHostHeader, "forward-auth-host-header", EnvForwardAuthHostHeader, "nginx convention: header carrying the original host (default "+DefaultNginxHostHeader+")")
	str(&c.UnixSocket, "unix-socket", EnvUnixSocket, "extra gRPC Unix socket for trusted local callers")
	str(&c.RouteTablePath, "routes", EnvRoutes, "route table file (method + path -> permission)")
	str(&c.TenantHostPattern, "tenant-host-pattern", EnvTenantHostPattern, `host pattern binding the tenant, e.g. "{tenant}.app.example.com"`)
	str(&c.TLSCertFile, "tls-cert", EnvTLSCert, "gRPC TLS certificate file (PEM)")
	str(&c.TLSKeyFile, "tls-key", EnvTLSKey, "gRPC TLS private key file (PEM)")
	str(&c.TLSClientCAFile, "tls-client-ca", EnvTLSClientCA, "CA bundle for gRPC client certificates (enables mTLS)")
	str(&c.TenantHeader, "tenant-header", EnvTenantHeader, "identity header carrying the tenant slug")
	str(&c.UserHeader, "user-header", EnvUserHeader, "identity header carrying the user id")
	str(&c.DecisionIDHeader, "decision-id-header", EnvDecisionIDHeader, "identity header carrying the decision id")

	str(&c.ExtAuthzMetadata, "ext-authz-metadata", EnvExtAuthzMetadata, "ext_authz dynamic metadata: minimal (decision_id, reason, version, consistency_token) or full (also tenant and user)")
	str(&c.AuthZENConfigPath, "authzen-config", EnvAuthZENConfig, "AuthZEN file (PEPs and mapping); empty: AuthZEN not served")

	trusted := (*listValue)(&c.TrustedClientIdentities)
	c.fromEnv(EnvTrustedClients, trusted)
	fs.Var(trusted, "trusted-clients", "comma-separated mTLS client identities (CN, DNS or URI SAN) allowed to send principals (env "+EnvTrustedClients+")")

	trust := (*boolValue)(&c.TrustForwardedPermission)
	c.fromEnv(EnvTrustForwardedPermission, trust)
	fs.Var(trust, "trust-forwarded-permission", "forward auth: take the permission from X-Neoauthz-Permission (env "+EnvTrustForwardedPermission+")")

	httpTLS := (*boolValue)(&c.HTTPTLS)
	c.fromEnv(EnvHTTPTLS, httpTLS)
	fs.Var(httpTLS, "http-tls", "serve the HTTP port over TLS with the gRPC certificate (client certificates verified when sent) (env "+EnvHTTPTLS+")")
	pprof := (*boolValue)(&c.Pprof)
	c.fromEnv(EnvPprof, pprof)
	fs.Var(pprof, "pprof", "serve /debug/pprof/ on the HTTP address (env "+EnvPprof+")")

	workers := (*intValue)(&c.GRPCStreamWorkers)
	c.fromEnv(EnvGRPCStreamWorkers, workers)
	fs.Var(workers, "grpc-stream-workers", "goroutines reused across gRPC requests (0: 32 per CPU; -1: a new goroutine per request) (env "+EnvGRPCStreamWorkers+")")

	shutdown := (*durationValue)(&c.ShutdownTimeout)
	c.fromEnv(EnvShutdownTimeout, shutdown)
	fs.Var(shutdown, "shutdown-timeout", "graceful shutdown deadline (env "+EnvShutdownTimeout+")")
}

func (c *Config) fromEnv(env string, v flag.Value) {
	s, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	if err := v.Set(s); err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", env, s, err))
	}
}

// Validate reports every problem with c at once, so an operator fixes them in one go.
func (c *Config) Validate() error {
	errs := append([]error(nil), c.envErrs...)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.GRPCAddr == "" {
		bad("grpc address is empty")
	} else if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		bad("grpc address %q: %v", c.GRPCAddr, err)
	}
	if c.HTTPAddr == "" {
		bad("http address is empty")
	} else if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("http address %q: %v", c.HTTPAddr, err)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			bad("metrics address %q: %v", c.MetricsAddr, err)
		} else if c.MetricsAddr == c.HTTPAddr {
			bad("metrics address must differ from the http address (leave it empty to share)")
		}
	}
	if _, err := newConvention(c.ForwardAuthHeaders, ""); err != nil {
		bad("forward auth headers: %v", err)
	}
	if h := c.ForwardAuthHostHeader; h != "" {
		if c.ForwardAuthHeaders != ConventionNginx {
			bad("a forward auth host header is only read under the nginx convention")
		}
		if !validHeaderName(strings.ToLower(h)) {
			bad("forward auth host header %q is not a valid header name", h)
		} else if slices.ContainsFunc([]string{hdrOriginalMethod, hdrOriginalURI, hdrForwardedMethod, hdrForwardedURI, "Host"},
			func(n string) bool { return strings.EqualFold(h, n) }) {
			bad("forward auth host header %q names another part of the request", h)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("tls certificate and key must be set together")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		bad("a tls client CA needs a server certificate and key")
	}
	if c.AuthZENConfigPath != "" {
		// Read at startup, so that a bad file stops the pdp before it connects to anything.
		if _, err := LoadAuthZENConfig(c.AuthZENConfigPath); err != nil {
			errs = append(errs, err)
		}
	}
	if c.HTTPTLS && c.TLSCertFile == "" {
		bad("http tls needs a server certificate and key")
	}
	if len(c.TrustedClientIdentities) > 0 && c.TLSClientCAFile == "" {
		// Without verified client certificates no identity can ever match: say so instead of
		// silently trusting nobody.
		bad("trusted client identities need a tls client CA (mTLS)")
	}
	for _, id := range c.TrustedClientIdentities {
		if strings.TrimSpace(id) == "" {
			bad("trusted client identities contain an empty entry")
			break
		}
	}
	if _, err := parseHostPattern(c.TenantHostPattern); err != nil {
		bad("tenant host pattern: %v", err)
	}
	for _, h := range []struct{ name, v string }{
		{"tenant header", c.TenantHeader}, {"user header", c.UserHeader}, {"decision id header", c.DecisionIDHeader},
	} {
		if !validHeaderName(h.v) {
			bad("%s %q is not a valid header name", h.name, h.v)
		}
	}
	if c.TenantHeader != "" && (strings.EqualFold(c.TenantHeader, c.UserHeader) ||
		strings.EqualFold(c.TenantHeader, c.DecisionIDHeader) || strings.EqualFold(c.UserHeader, c.DecisionIDHeader)) {
		bad("identity header names must differ")
	}
	if c.ExtAuthzMetadata != "" && c.ExtAuthzMetadata != MetadataMinimal && c.ExtAuthzMetadata != MetadataFull {
		bad("ext_authz metadata must be %q or %q, got %q", MetadataMinimal, MetadataFull, c.ExtAuthzMetadata)
	}
	if c.GRPCStreamWorkers < -1 || c.GRPCStreamWorkers > maxGRPCStreamWorkers {
		bad("grpc stream workers must be in [-1, %d], got %d", maxGRPCStreamWorkers, c.GRPCStreamWorkers)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown timeout must be positive, got %v", c.ShutdownTimeout)
	}
	if c.ReadinessPollInterval <= 0 {
		bad("readiness poll interval must be positive, got %v", c.ReadinessPollInterval)
	}
	return errors.Join(errs...)
}

// serverTLS builds the gRPC server's TLS configuration, or nil without a certificate.
func (c *Config) serverTLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCAFile != "" {
		pem, err := os.ReadFile(c.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server: tls client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: tls client CA %s: no certificate found", c.TLSClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// validHeaderName reports whether s is an RFC 9110 token in lowercase: Envoy compares header
// names lowercased, and a mixed-case name here would silently not match its mutation rules.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// listValue is a comma-separated flag.Value; Set replaces the list, so the flag overrides the
// environment instead of appending to it.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = (*l)[:0]
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

type boolValue bool

func (b *boolValue) String() string { return strconv.FormatBool(bool(*b)) }

func (b *boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*b = boolValue(v)
	return nil
}

// IsBoolFlag lets "-trust-forwarded-permission" stand alone on the command line.
func (b *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (i *intValue) String() string { return strconv.Itoa(int(*i)) }

func (i *intValue) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*i = intValue(v)
	return nil
}

// DefaultStreamWorkersPerCPU is the number of gRPC stream workers per CPU when
// GRPCStreamWorkers is 0. An idle worker is a parked goroutine and its stack.
const DefaultStreamWorkersPerCPU = 32

// maxGRPCStreamWorkers bounds GRPCStreamWorkers: workers are goroutines started up front.
const maxGRPCStreamWorkers = 4096

// streamWorkers is the grpc.NumStreamWorkers value of c.GRPCStreamWorkers: 0 for none.
func (c *Config) streamWorkers() uint32 {
	switch {
	case c.GRPCStreamWorkers < 0:
		return 0
	case c.GRPCStreamWorkers == 0:
		return uint32(min(DefaultStreamWorkersPerCPU*runtime.GOMAXPROCS(0), maxGRPCStreamWorkers))
	default:
		return uint32(c.GRPCStreamWorkers)
	}
}

type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 10s)")
	}
	*d = durationValue(v)
	return nil
}
