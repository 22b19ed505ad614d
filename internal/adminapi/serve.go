package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/neofast/neoauthz/internal/pprof"
)

// Defaults of Config.
const (
	DefaultAddr           = ":8001"
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
	DefaultShutdownGrace  = 15 * time.Second
)

// Config is how `admin serve` runs the API.
type Config struct {
	// Addr is the listen address (NEOAUTHZ_ADMIN_ADDR, --addr).
	Addr string
	// HealthInterval is the database health monitor's period; 0 disables the monitor.
	HealthInterval time.Duration
	// HealthTimeout bounds one connection's health probe.
	HealthTimeout time.Duration
	// OutboxInterval is the period of the shipper that moves rows left in the tenants'
	// audit_outbox to admin.audit_log; 0 means DefaultOutboxInterval, negative disables it.
	OutboxInterval time.Duration
	// ShutdownGrace is how long in-flight requests get after a stop signal.
	ShutdownGrace time.Duration
	// DecisionRetention is how long decisions are kept in the analytics databases (a tenant's
	// settings.decision_log.retention_days may shorten it); 0 means decisionlog.DefaultRetention.
	DecisionRetention time.Duration
	// DecisionPruneInterval is the period of decision-log maintenance (partitions ahead,
	// retention); 0 means DefaultDecisionPruneInterval, negative disables it.
	DecisionPruneInterval time.Duration
	// Pprof serves Go's profiling endpoints under /debug/pprof/ (off by default).
	Pprof bool
}

// DefaultDecisionPruneInterval is how often `admin serve` maintains the decision logs.
const DefaultDecisionPruneInterval = time.Hour

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr: required"))
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr: %q is not host:port", c.Addr))
	}
	if c.HealthInterval < 0 {
		errs = append(errs, errors.New("health-interval: must not be negative"))
	} else if c.HealthInterval > 0 && c.HealthInterval < time.Second {
		errs = append(errs, errors.New("health-interval: at least 1s (or 0 to disable)"))
	}
	if c.HealthTimeout <= 0 {
		errs = append(errs, errors.New("health-timeout: must be positive"))
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("shutdown-grace: must be positive"))
	}
	if c.DecisionRetention < 0 {
		errs = append(errs, errors.New("decision-retention: must not be negative"))
	}
	return errors.Join(errs...)
}

// Serve listens on cfg.Addr and runs the health monitor and the audit outbox shipper until
// ctx ends, then shuts down
// gracefully: stop accepting, let requests finish within ShutdownGrace, wait for jobs.
func (s *Server) Serve(ctx context.Context, cfg Config, ready func(addr string)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	s.baseCtx = ctx
	handler := s.Handler()
	if cfg.Pprof {
		mux := http.NewServeMux()
		pprof.Register(mux)
		mux.Handle("/", handler)
		handler = mux
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if cfg.HealthInterval > 0 {
		g.Go(func() error {
			s.MonitorHealth(gctx, cfg.HealthInterval, cfg.HealthTimeout)
			return nil
		})
	}
	if cfg.OutboxInterval >= 0 {
		interval := cfg.OutboxInterval
		if interval == 0 {
			interval = DefaultOutboxInterval
		}
		g.Go(func() error {
			s.MonitorAuditOutbox(gctx, interval)
			return nil
		})
	}
	if cfg.DecisionPruneInterval >= 0 {
		interval := cfg.DecisionPruneInterval
		if interval == 0 {
			interval = DefaultDecisionPruneInterval
		}
		g.Go(func() error {
			s.MaintainDecisionLogs(gctx, interval, cfg.DecisionRetention)
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		return nil
	})
	s.Log.Info("admin API listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	err = g.Wait()
	s.Close()
	return err
}

// BootstrapResult says what Bootstrap did.
type BootstrapResult struct {
	UserID       string
	CreatedUser  bool
	AssignedRole bool
	Version      int64
}

// Bootstrap makes externalID (a platform-realm sub) a platform user holding system_admin,
// unrestricted. It is idempotent: an existing user or assignment is left as it is (an email
// given is recorded). The change and its audit row commit together.
func Bootstrap(ctx context.Context, pool *pgxpool.Pool, externalID, email, actor string) (BootstrapResult, error) {
	if externalID == "" || len(externalID) > 255 {
		return BootstrapResult{}, errors.New("--user: the platform user's external id (token sub) is required, at most 255 characters")
	}
	var res BootstrapResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO admin.platform_users (external_id, email) VALUES ($1, nullif($2, ''))
			ON CONFLICT (external_id) DO UPDATE SET email = coalesce(EXCLUDED.email, platform_users.email),
				updated_at = CASE WHEN EXCLUDED.email IS DISTINCT FROM platform_users.email AND EXCLUDED.email IS NOT NULL
				                  THEN now() ELSE platform_users.updated_at END
			RETURNING id::text, xmax = 0`, externalID, email).Scan(&res.UserID, &res.CreatedUser)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO admin.platform_user_roles (user_id, role_id, granted_by)
			SELECT $1::uuid, id, $2 FROM admin.platform_roles WHERE code = 'system_admin'
			ON CONFLICT (user_id, role_id, tenant_id) DO NOTHING`, res.UserID, actor)
		if err != nil {
			return err
		}
		res.AssignedRole = tag.RowsAffected() == 1
		if !res.CreatedUser && !res.AssignedRole {
			return nil
		}
		if _, err := appendAudit(ctx, tx, auditRecord{Actor: actor, Action: "platform_user.bootstrap", TargetType: "platform_user",
			TargetID: res.UserID, After: map[string]any{"external_id": externalID, "role": "system_admin",
				"created_user": res.CreatedUser, "assigned_role": res.AssignedRole}}); err != nil {
			return err
		}
		res.Version, err = adminVersion(ctx, tx)
		return err
	})
	if err != nil {
		return BootstrapResult{}, err
	}
	if res.Version == 0 {
		res.Version, err = adminVersion(ctx, pool)
	}
	return res, err
}
