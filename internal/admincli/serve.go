package admincli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/adminapi"
	"github.com/neofast/neoauthz/internal/audit"
	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/pgstore"
)

// serveConfig is `admin serve`'s configuration: flags, defaulting to the environment.
type serveConfig struct {
	API            adminapi.Config
	TrustedIssuers []string
	PlatformRealm  string
	Audiences      []string
	Clients        []string
	AnyAudience    bool
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (a *app) parseServe(args []string) (serveConfig, error) {
	getenv := func(k, def string) string {
		if v := a.env.Getenv(k); v != "" {
			return v
		}
		return def
	}
	envDur := func(k string, def time.Duration) (time.Duration, error) {
		v := a.env.Getenv(k)
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a duration (e.g. 30s): %w", k, v, ErrUsage)
		}
		return d, nil
	}
	var c serveConfig
	interval, err := envDur("NEOAUTHZ_ADMIN_HEALTH_INTERVAL", adminapi.DefaultHealthInterval)
	if err != nil {
		return c, err
	}
	timeout, err := envDur("NEOAUTHZ_ADMIN_HEALTH_TIMEOUT", adminapi.DefaultHealthTimeout)
	if err != nil {
		return c, err
	}
	retention, err := envRetention(a.env.Getenv)
	if err != nil {
		return c, err
	}
	pprofOn, err := strconv.ParseBool(getenv("NEOAUTHZ_PPROF", "false"))
	if err != nil {
		return c, fmt.Errorf("NEOAUTHZ_PPROF: not a boolean: %w", ErrUsage)
	}
	fs := newFlags("serve")
	var issuers, audiences, clients string
	fs.StringVar(&c.API.Addr, "addr", getenv("NEOAUTHZ_ADMIN_ADDR", adminapi.DefaultAddr), "")
	fs.StringVar(&issuers, "trusted-issuers", getenv("NEOAUTHZ_TRUSTED_ISSUERS", ""), "")
	fs.StringVar(&c.PlatformRealm, "platform-realm", getenv("NEOAUTHZ_PLATFORM_REALM", ""), "")
	fs.StringVar(&audiences, "audiences", getenv("NEOAUTHZ_AUDIENCES", ""), "")
	fs.StringVar(&clients, "clients", getenv("NEOAUTHZ_CLIENTS", ""), "")
	anyAudience, _ := strconv.ParseBool(getenv("NEOAUTHZ_ALLOW_ANY_AUDIENCE", "false"))
	fs.BoolVar(&c.AnyAudience, "allow-any-audience", anyAudience, "")
	fs.DurationVar(&c.API.HealthInterval, "health-interval", interval, "")
	fs.DurationVar(&c.API.HealthTimeout, "health-timeout", timeout, "")
	fs.DurationVar(&c.API.DecisionRetention, "decision-retention", retention, "")
	fs.DurationVar(&c.API.DecisionPruneInterval, "decision-prune-interval", adminapi.DefaultDecisionPruneInterval, "")
	fs.BoolVar(&c.API.Pprof, "pprof", pprofOn, "")
	if err := parse(fs, args); err != nil {
		return c, err
	}
	c.API.ShutdownGrace = adminapi.DefaultShutdownGrace
	c.TrustedIssuers, c.Audiences, c.Clients = splitList(issuers), splitList(audiences), splitList(clients)
	var errs []error
	if err := authn.CheckAudienceSetting(len(c.Audiences) > 0, c.AnyAudience, "--audiences (NEOAUTHZ_AUDIENCES)", "--allow-any-audience"); err != nil {
		errs = append(errs, err)
	}
	if len(c.TrustedIssuers) == 0 {
		errs = append(errs, errors.New("--trusted-issuers (NEOAUTHZ_TRUSTED_ISSUERS) is required: the Keycloak base URL(s)"))
	}
	if c.PlatformRealm == "" {
		errs = append(errs, errors.New("--platform-realm (NEOAUTHZ_PLATFORM_REALM) is required: only its tokens may use the admin API"))
	}
	if err := c.API.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("serve: %w: %w", errors.Join(errs...), ErrUsage)
	}
	return c, nil
}

func (a *app) serve(ctx context.Context, args []string) error {
	cfg, err := a.parseServe(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(a.env.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a.tenants.PlatformRealm = cfg.PlatformRealm
	store := pgstore.New(a.pool, a.reg, pgstore.Options{})
	defer store.Close()
	v, err := authn.New(authn.Config{TrustedIssuerBases: cfg.TrustedIssuers, PlatformRealm: cfg.PlatformRealm,
		Audiences: cfg.Audiences, Clients: cfg.Clients, AllowAnyAudience: cfg.AnyAudience}, store, log)
	if err != nil {
		return fmt.Errorf("token validation: %w", err)
	}
	// Run returns nil when ctx ends; anything else means keys stop refreshing, which must be
	// visible in the logs even though serving continues on the keys already fetched.
	go func() {
		if err := v.Run(ctx); err != nil {
			log.Error("token key refresh stopped", "err", err)
		}
	}()
	srv, err := adminapi.New(adminapi.Deps{Admin: a.pool, Registry: a.reg, Fleet: a.fleet, Tenants: a.tenants, Store: store, Validator: v, Log: log})
	if err != nil {
		return err
	}
	return srv.Serve(ctx, cfg.API, func(addr string) {
		fmt.Fprintf(a.env.Stdout, "admin API listening on %s (docs: /docs, OpenAPI: /openapi.json)\n", addr)
	})
}

func (a *app) bootstrap(ctx context.Context, args []string) error {
	fs := newFlags("bootstrap")
	var user, email string
	fs.StringVar(&user, "user", "", "")
	fs.StringVar(&email, "email", "", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("bootstrap: --user SUB is required: %w", ErrUsage)
	}
	res, err := adminapi.Bootstrap(ctx, a.pool, user, email, a.actor())
	if err != nil {
		return err
	}
	switch {
	case res.CreatedUser:
		fmt.Fprintf(a.env.Stdout, "created platform user %s (%s)\n", user, res.UserID)
	default:
		fmt.Fprintf(a.env.Stdout, "platform user %s (%s) already exists\n", user, res.UserID)
	}
	if res.AssignedRole {
		fmt.Fprintf(a.env.Stdout, "assigned role system_admin (platform-wide); authorization version %d\n", res.Version)
	} else {
		fmt.Fprintln(a.env.Stdout, "role system_admin was already assigned; nothing changed")
	}
	return nil
}

// auditKey is the operator's checkpoint key (NEOAUTHZ_AUDIT_KEY): any secret of at least 16
// bytes, kept away from the database's administrators.
func (a *app) auditKey() ([]byte, error) {
	k := a.env.Getenv(audit.EnvKey)
	if len(k) < 16 {
		return nil, fmt.Errorf("%s must hold a secret of at least 16 bytes (e.g. `openssl rand -base64 32`), kept where the database's administrators cannot read it", audit.EnvKey)
	}
	return []byte(k), nil
}

func (a *app) auditVerify(ctx context.Context, args []string) error {
	fs := newFlags("audit verify")
	var expectHead string
	fs.StringVar(&expectHead, "expect-head", "", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	var expect *audit.Head
	if expectHead != "" {
		key, err := a.auditKey()
		if err != nil {
			return err
		}
		h, err := audit.ParseCheckpoint(expectHead, key)
		if err != nil {
			return fmt.Errorf("--expect-head: %w", err)
		}
		expect = &h
	}
	res, err := adminapi.VerifyAudit(ctx, a.pool, expect)
	if err != nil {
		return err
	}
	if !res.OK {
		fmt.Fprintf(a.env.Stdout, "audit log BROKEN after %d rows: %s\n", res.Rows, res.Problem)
		return fmt.Errorf("audit log chain is broken at row %d", *res.FirstBadID)
	}
	fmt.Fprintf(a.env.Stdout, "audit log intact: %d rows verified\n", res.Rows)
	return nil
}

// auditCheckpoint prints the chain's head with a MAC under the operator's key, for the
// operator to keep outside the database and give back to `audit verify --expect-head`.
func (a *app) auditCheckpoint(ctx context.Context) error {
	key, err := a.auditKey()
	if err != nil {
		return err
	}
	h, ok, err := audit.CurrentHead(ctx, a.pool)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the audit log is empty: nothing to checkpoint yet")
	}
	fmt.Fprintln(a.env.Stdout, audit.Checkpoint(h, key))
	return nil
}
