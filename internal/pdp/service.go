// Package pdp is the policy decision point's service: it establishes the subject (a verified
// token or a trusted principal), finds the tenant, gets the user's compiled permission set
// from the two-tier cache or PostgreSQL, and decides — never from data older than the newest
// change the pdp has been told about.
package pdp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	authzsync "github.com/neofast/neoauthz/internal/sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes decisions and caching.
type Config struct {
	// MaxStaleness lets cached decisions for a database whose listener is down be used for
	// this long after it went down. Zero (the default) fails closed: nothing cached from it
	// is used, and if it cannot be read either, the pdp answers with an error.
	MaxStaleness time.Duration
	// UnknownUserTTL is how long "unknown user" is cached. Default 5s.
	UnknownUserTTL time.Duration
	// DirectoryTTL bounds how long a tenant's directory entry (status, placement) is kept
	// in process; changes are also pushed by notifications. Default 30s.
	DirectoryTTL time.Duration
	// Cache configures the permission-set cache tiers.
	Cache cache.Options
	// UnknownTenants bounds how many unknown tenant names are remembered (each for at most
	// DirectoryTTL, all forgotten on any tenant change). Default 10,000.
	UnknownTenants int
	// Regions limits the pdp to tenants whose data lives in these regions (the zero value:
	// every region). A subject of a tenant of another region is denied with
	// ReasonNotServedInRegion before anything of the tenant's is loaded; platform subjects
	// (whose RBAC is in the admin database) are served whatever the regions.
	Regions registry.Regions
	// UserSync bounds the writes of just-in-time user sync (tenants with
	// settings.user_sync.enabled).
	UserSync UserSyncConfig
	// Clock is the time decisions are made at (expiries, MaxStaleness, the unknown-user and
	// directory lifetimes). Nil means time.Now; tests move it forward.
	Clock func() time.Time
}

func (c *Config) defaults() {
	if c.UnknownUserTTL <= 0 {
		c.UnknownUserTTL = 5 * time.Second
	}
	if c.DirectoryTTL <= 0 {
		c.DirectoryTTL = 30 * time.Second
	}
	if c.UnknownTenants <= 0 {
		c.UnknownTenants = 10_000
	}
	if c.Cache.Name == "" {
		c.Cache.Name = "permset"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Store is the PostgreSQL access the service needs.
type Store interface {
	Tenant(ctx context.Context, idOrSlug string) (pgstore.Tenant, error)
	// FillTenantUser loads a tenant user's facts for a cache fill; it may read a replica, and
	// keeps what it read there only at a version of at least floor() (else reads the primary).
	FillTenantUser(ctx context.Context, t pgstore.Tenant, externalID string, floor func() uint64) (decision.Input, error)
	LoadPlatformUser(ctx context.Context, externalID string) (decision.Input, error)
	Catalog(ctx context.Context, t pgstore.Tenant) ([]string, error)
	PlatformCatalog(ctx context.Context) ([]string, error)
	// AdminVersion and TenantVersion read a database's current version (one row).
	AdminVersion(ctx context.Context) (uint64, error)
	TenantVersion(ctx context.Context, t pgstore.Tenant) (uint64, error)
}

// Service decides.
type Service struct {
	cfg       Config
	validator *authn.Validator
	store     Store
	admin     *pgxpool.Pool
	floors    *authzsync.Floors
	sets      *cache.Cache[*Entry]
	parts     *decision.Interner // compiled parts shared by users with the same grants
	users     *userSync
	now       func() time.Time
	log       *slog.Logger

	dirMu gosync.RWMutex
	dir   map[string]dirEntry // tenants found, by id and by slug: bounded by the tenants there are
	// unknown holds names no tenant had, with when and at which admin version that was read;
	// names come from requests, so this is bounded and expires.
	unknown *cache.TTL[string, unknownName]

	// probes finds out whether the versions consistency tokens name exist.
	probes probes
	// tokens remembers the encoded consistency tokens of recent version tuples.
	tokens *tokenMemo
	// identityAt is the highest admin version identity caches were dropped for because a
	// token named it before its notification came.
	identityAt atomic.Uint64
	// identityCaches are dropped with the validator's (AlsoInvalidate).
	identityCaches []func()
}

// unknownName is a name no tenant had when it was read.
type unknownName struct {
	read time.Time
	// atLeast is an admin version the read was at least at: the newest one heard of when it
	// began.
	atLeast uint64
}

type dirEntry struct {
	tenant  pgstore.Tenant
	fetched time.Time
}

// New returns a Service. validator may be nil when every subject is a principal; rdb may be
// nil to run without Redis.
func New(cfg Config, validator *authn.Validator, store Store, admin *pgxpool.Pool, floors *authzsync.Floors,
	rdb redis.UniversalClient, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	cfg.defaults()
	parts := decision.NewInterner()
	sets, err := cache.New[*Entry](cfg.Cache, rdb, entryCodec{parts: parts}, reg)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, validator: validator, store: store, admin: admin, floors: floors, sets: sets,
		parts: parts, now: cfg.Clock, log: log, dir: map[string]dirEntry{}, tokens: newTokenMemo()}
	if s.users, err = newUserSync(cfg.UserSync, store, reg, func() time.Time { return s.now() }); err != nil {
		sets.Close()
		return nil, err
	}
	s.unknown = cache.NewTTL[string, unknownName](cfg.UnknownTenants, cfg.DirectoryTTL, func() time.Time { return s.now() })
	return s, nil
}

// WaitIdle waits until cache writes to Redis that are under way have finished.
func (s *Service) WaitIdle() { s.sets.WaitIdle() }

// Close waits for profile updates under way and releases the caches.
func (s *Service) Close() {
	s.users.wg.Wait()
	s.sets.Close()
}

// TenantChanged drops what the service knows of a tenant ("" = every tenant) after a change of
// its status, realm or placement; the sync layer calls it.
func (s *Service) TenantChanged(tenantID string) {
	s.dirMu.Lock()
	if tenantID == "" {
		clear(s.dir)
	} else {
		for k, e := range s.dir {
			if e.tenant.ID == tenantID {
				delete(s.dir, k)
			}
		}
	}
	s.dirMu.Unlock()
	// Any change may have created a tenant of a name remembered as unknown.
	s.unknown.Purge()
	// Realm → tenant answers and verified tokens of that tenant carry its status.
	s.invalidateIdentity()
}

// SubjectFromToken verifies a bearer token.
func (s *Service) SubjectFromToken(ctx context.Context, token string) (Subject, error) {
	if s.validator == nil {
		return Subject{}, fmt.Errorf("%w: tokens are not accepted (no trusted issuer configured)", ErrUnauthenticated)
	}
	id, err := s.validator.Validate(ctx, token)
	if err != nil {
		if authn.KindOf(err).Unauthenticated() {
			return Subject{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		return Subject{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return Subject{Level: id.Level, TenantID: id.TenantID, TenantSlug: id.TenantSlug, UserID: id.Subject, Identity: id}, nil
}

// SubjectFromPrincipal names a subject directly (trusted callers only; the transport checks
// that). tenant is an id or a slug; "" means the platform level.
func (s *Service) SubjectFromPrincipal(ctx context.Context, tenant, user string) (Subject, error) {
	if user == "" || !validID(user) {
		return Subject{}, errBadPrincipalUser
	}
	if tenant == "" {
		return Subject{Level: authn.LevelPlatform, UserID: user}, nil
	}
	if !ValidTenantName(tenant) {
		return Subject{}, errBadPrincipalTenant
	}
	t, found, err := s.tenantAt(ctx, tenant, 0, s.now())
	if err != nil {
		return Subject{}, err
	}
	if !found {
		// Check answers "unknown tenant" for it. TenantSlug stays empty: only known tenants
		// are named in labels and headers.
		return Subject{Level: authn.LevelTenant, TenantID: tenant, UserID: user}, nil
	}
	return Subject{Level: authn.LevelTenant, TenantID: t.ID, TenantSlug: t.Slug, UserID: user}, nil
}

// tenantAt returns the directory entry of a tenant by id or slug, from process memory while
// it is no older than DirectoryTTL, no notification about the tenant came since, and it
// reflects admin version atAdmin (a consistency token's admin part; 0 for none).
func (s *Service) tenantAt(ctx context.Context, idOrSlug string, atAdmin uint64, now time.Time) (pgstore.Tenant, bool, error) {
	s.dirMu.RLock()
	e, ok := s.dir[idOrSlug]
	s.dirMu.RUnlock()
	if ok && now.Sub(e.fetched) < s.cfg.DirectoryTTL && s.trusted(authzsync.AdminDatabase, e.fetched, now) &&
		e.tenant.AdminVersion >= s.floors.DirFloor(e.tenant.ID) && e.tenant.AdminVersion >= atAdmin {
		return e.tenant, true, nil
	}
	if !ok {
		if !ValidTenantName(idOrSlug) {
			// Callers refuse such names as invalid requests; whatever comes here anyway is
			// no tenant's, and is neither looked up nor remembered.
			return pgstore.Tenant{}, false, nil
		}
		if u, ok := s.unknown.Get(idOrSlug); ok && s.trusted(authzsync.AdminDatabase, u.read, now) && u.atLeast >= atAdmin {
			return pgstore.Tenant{}, false, nil
		}
	}
	heard := s.floors.Seen(authzsync.PlatformScope)
	t, err := s.store.Tenant(ctx, idOrSlug)
	if errors.Is(err, pgstore.ErrNotFound) {
		s.dirMu.Lock()
		delete(s.dir, idOrSlug)
		s.dirMu.Unlock()
		s.unknown.Add(idOrSlug, unknownName{read: now, atLeast: heard}, now.Add(s.cfg.DirectoryTTL))
		return pgstore.Tenant{}, false, nil
	}
	if err != nil {
		return pgstore.Tenant{}, false, fmt.Errorf("%w: read tenant: %w", ErrUnavailable, err)
	}
	s.dirMu.Lock()
	s.dir[t.ID] = dirEntry{tenant: t, fetched: now}
	s.dir[t.Slug] = dirEntry{tenant: t, fetched: now}
	s.dirMu.Unlock()
	s.unknown.Remove(t.ID)
	s.unknown.Remove(t.Slug)
	return t, true, nil
}

// trusted reports whether data read from db at the given time may still be used: the
// database's listener is up (so any change since was notified and has raised a floor), or it
// went down after the read no longer ago than MaxStaleness.
func (s *Service) trusted(db string, read, now time.Time) bool {
	since, down := s.floors.DownSince(db)
	if !down {
		return true
	}
	return s.cfg.MaxStaleness > 0 && !since.IsZero() && !read.After(since.Add(s.cfg.MaxStaleness)) &&
		now.Sub(since) <= s.cfg.MaxStaleness
}

// Check decides one request.
func (s *Service) Check(ctx context.Context, sub Subject, req Request) (Result, error) {
	res, err := s.check(ctx, sub, req)
	res.DecisionID = newDecisionID()
	return res, err
}

// CheckBulk decides several requests for one subject, reading its permission set once.
func (s *Service) CheckBulk(ctx context.Context, sub Subject, reqs []Request) ([]Result, error) {
	out := make([]Result, len(reqs))
	for i, r := range reqs {
		res, err := s.Check(ctx, sub, r)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = res
	}
	return out, nil
}

func (s *Service) check(ctx context.Context, sub Subject, req Request) (Result, error) {
	// One clock reading per decision: it is used for every expiry comparison below.
	now := s.now()
	if sub.UserID == "" {
		return Result{Reason: ReasonUnauthenticated}, nil
	}
	// An invalid request is an API error before any tenant or user gate (DESIGN §2).
	if err := ValidateRequest(sub, req); err != nil {
		return Result{}, err
	}
	if req.BoundTenant != "" {
		bound, found, err := s.tenantAt(ctx, req.BoundTenant, req.Consistency.Admin, now)
		if err != nil {
			return Result{}, err
		}
		names := func(ref string) bool { return found && (ref == bound.ID || ref == bound.Slug) }
		// A tenant subject must belong to the bound tenant. A platform subject acts on a bound
		// tenant only as the target of a resource check naming that same tenant (a platform
		// route such as /tenants/{tenant}/...); anything else is cross-tenant.
		if sub.Level == authn.LevelTenant && !names(sub.TenantID) ||
			sub.Level != authn.LevelTenant && (req.Resource == nil || !names(req.Resource.Tenant)) {
			return Result{Reason: ReasonCrossTenant}, nil
		}
	}
	entry, err := s.permissionSet(ctx, sub, req.Consistency, now)
	if err != nil {
		return Result{}, err
	}
	tok, text := s.tokenOf(entry, sub.Level)
	if entry.reason != nil {
		return Result{Reason: *entry.reason, Token: tok, tokenText: text}, nil
	}
	if entry.detail != "" {
		// Only an unknown user's set carries a detail (synced).
		return Result{Reason: ReasonUnknownUser, Detail: entry.detail, Version: entry.Set.Version(), Token: tok, tokenText: text}, nil
	}
	dreq := decision.Request{Permission: req.Permission}
	if req.Resource != nil {
		dreq.HasResource = true
		dreq.Resource.OwnerID = req.Resource.OwnerID
		dreq.Resource.Group = req.Resource.TeamID
		if sub.Level == authn.LevelPlatform && req.Resource.Tenant != "" {
			t, found, err := s.tenantAt(ctx, req.Resource.Tenant, req.Consistency.Admin, now)
			if err != nil {
				return Result{}, err
			}
			if found {
				dreq.Resource.Group = t.ID
			} else {
				// No grant can be restricted to a tenant that does not exist; the marker
				// never equals a tenant id.
				dreq.Resource.Group = "!unknown:" + req.Resource.Tenant
			}
		}
	}
	d, err := entry.Set.Check(now, dreq)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return Result{Allowed: d.Allowed, Reason: fromEngine(d.Reason), Grant: d.Grant, Version: d.Version, Token: tok, tokenText: text}, nil
}

// ListPermissions returns the subject's effective concrete codes, from data at least as new
// as at, and the token of the data used.
func (s *Service) ListPermissions(ctx context.Context, sub Subject, at consistency.Token) ([]string, consistency.Token, error) {
	now := s.now()
	entry, err := s.permissionSet(ctx, sub, at, now)
	if err != nil {
		return nil, consistency.Token{}, err
	}
	tok, _ := s.tokenOf(entry, sub.Level)
	if entry.reason != nil {
		return nil, tok, nil
	}
	var catalog []string
	if sub.Level == authn.LevelPlatform {
		catalog, err = s.store.PlatformCatalog(ctx)
	} else {
		catalog, err = s.store.Catalog(ctx, entry.tenant)
	}
	if err != nil {
		return nil, consistency.Token{}, fmt.Errorf("%w: read catalog: %w", ErrUnavailable, err)
	}
	return entry.Set.ListPermissions(now, catalog), tok, nil
}

// resolved is a permission set ready for checks, or a reason decided before any set.
type resolved struct {
	*Entry
	tenant pgstore.Tenant
	reason *Reason
	// detail says why an unknown user was not synced (DetailSyncRateLimited, ...).
	detail string
}

var (
	reasonUnknownTenant   = ReasonUnknownTenant
	reasonTenantSuspended = ReasonTenantSuspended
	reasonNotServed       = ReasonNotServedInRegion
)

// permissionSet returns the subject's set, from data at least as new as every part of at
// that concerns it: platform sets and tenant directory entries at least at its admin part, a
// tenant's sets at least at the tenant's part.
func (s *Service) permissionSet(ctx context.Context, sub Subject, at consistency.Token, now time.Time) (resolved, error) {
	if sub.Level == authn.LevelPlatform {
		// The fill captures the user, not sub: a subject (with its token's identity) is too
		// large to be captured by value, and capturing it by reference would move it to the
		// heap on every check.
		user := sub.UserID
		atLeast := at.Admin
		key := cache.PlatformUserKey(user)
		if e, ok := s.warm(key, authzsync.PlatformScope, user, authzsync.AdminDatabase, 0, atLeast, now); ok {
			return resolved{Entry: e}, nil
		}
		e, err := s.get(ctx, key, authzsync.PlatformScope, user, authzsync.AdminDatabase, 0, atLeast, now,
			func(ctx context.Context) (decision.Input, uint64, error) {
				in, err := s.store.LoadPlatformUser(ctx, user)
				return in, in.Version, err
			})
		return resolved{Entry: e}, err
	}
	t, found, err := s.tenantAt(ctx, sub.TenantID, at.Admin, now)
	if err != nil {
		return resolved{}, err
	}
	if !found {
		return resolved{tenant: pgstore.Tenant{AdminVersion: max(at.Admin, s.floors.Seen(authzsync.PlatformScope))},
			reason: &reasonUnknownTenant}, nil
	}
	atLeast := at.TenantVersion(t.ID)
	// Before the status: whatever the tenant's state, this pdp is not the one to ask, and
	// the answer must not depend on (or reveal) anything but the directory entry.
	if !t.ServedBy(s.cfg.Regions) {
		return resolved{tenant: t, reason: &reasonNotServed}, nil
	}
	if t.Status != "active" {
		return resolved{tenant: t, reason: &reasonTenantSuspended}, nil
	}
	key, err := cache.TenantUserKey(t.ID, sub.UserID)
	if err != nil {
		return resolved{}, fmt.Errorf("tenant %q: %w", t.ID, err)
	}
	db := authzsync.DatabaseKey(t.ConnectionID, t.Database)
	e, ok := s.warm(key, t.ID, sub.UserID, db, t.AdminVersion, atLeast, now)
	if !ok {
		if e, err = s.get(ctx, key, t.ID, sub.UserID, db, t.AdminVersion, atLeast, now,
			s.tenantFill(t, sub.UserID, atLeast)); err != nil {
			return resolved{Entry: e, tenant: t}, err
		}
	}
	if t.UserSync {
		return s.synced(ctx, sub, t, key, db, atLeast, now, e)
	}
	return resolved{Entry: e, tenant: t}, nil
}

// tenantFill loads a tenant user's facts for a cache fill of an entry that must be at least at
// atLeast.
func (s *Service) tenantFill(t pgstore.Tenant, user string, atLeast uint64) func(context.Context) (decision.Input, uint64, error) {
	return func(ctx context.Context) (decision.Input, uint64, error) {
		// The floor the entry will be judged by (current), so a replica's older data is
		// read again from the primary rather than loaded and refused as stale.
		in, err := s.store.FillTenantUser(ctx, t, user, func() uint64 {
			return max(s.floors.Floor(t.ID, user), atLeast)
		})
		return in, t.AdminVersion, err
	}
}

// current reports whether e was computed at or after the newest version known for the scope
// and the user (and at least atLeast), from a directory entry no older than the tenant's
// directory floor and the one in use, and is not past the earliest expiry inside it (nor, for
// an unknown user, past UnknownUserTTL).
func (s *Service) current(e *Entry, scope, user string, adminVersion, atLeast uint64, now time.Time) bool {
	if e == nil {
		return false
	}
	floor := max(s.floors.Floor(scope, user), atLeast)
	if e.Set.Version() < floor || e.AdminVersion < s.floors.DirFloor(scope) || e.AdminVersion < adminVersion {
		return false
	}
	if e.Set.Status() == decision.ReasonUnknownUser && now.Sub(e.loaded()) >= s.cfg.UnknownUserTTL {
		// The cache tiers drop it after UnknownUserTTL too; this holds on the decision clock.
		return false
	}
	exp := e.Set.Expiry()
	return exp.IsZero() || now.Before(exp)
}

// warm returns the in-process entry for key when it may be used as it is: the path of nearly
// every check, kept free of the closures a miss needs.
func (s *Service) warm(key, scope, user, db string, adminVersion, atLeast uint64, now time.Time) (*Entry, bool) {
	e, ok := s.sets.PeekL1(key)
	if !ok || !s.current(e, scope, user, adminVersion, atLeast, now) || !s.trusted(db, e.loaded(), now) {
		return nil, false
	}
	s.sets.HitL1()
	return e, true
}

// get returns a fresh compiled set for key. Fresh means: computed at or after the newest
// version the pdp knows for the scope and the user (and at least atLeast), from a directory
// entry no older than the tenant's directory floor, and from a database whose notifications
// are flowing (or were, within MaxStaleness) — or loaded by this very call.
func (s *Service) get(ctx context.Context, key, scope, user, db string, adminVersion, atLeast uint64, now time.Time,
	load func(context.Context) (decision.Input, uint64, error)) (*Entry, error) {
	var mine atomic.Pointer[Entry]
	fresh := func(e *Entry) bool {
		return s.current(e, scope, user, adminVersion, atLeast, now) && (mine.Load() == e || s.trusted(db, e.loaded(), now))
	}
	e, _, err := s.sets.Get(ctx, key, fresh, func(ctx context.Context) (cache.Loaded[*Entry], error) {
		in, av, err := load(ctx)
		if err != nil {
			return cache.Loaded[*Entry]{}, err
		}
		loadedAt := s.now()
		e := &Entry{AdminVersion: av, LoadedAt: loadedAt.UnixNano()}
		if _, err := s.parts.CompileInto(&e.Set, in, loadedAt); err != nil {
			return cache.Loaded[*Entry]{}, err
		}
		mine.Store(e)
		var ttl time.Duration
		if !in.UserKnown {
			ttl = s.cfg.UnknownUserTTL
		}
		if exp := e.Set.Expiry(); !exp.IsZero() {
			until := exp.Sub(loadedAt)
			if until <= 0 {
				until = time.Millisecond
			}
			if ttl == 0 || until < ttl {
				ttl = until
			}
		}
		return cache.Loaded[*Entry]{Value: e, TTL: ttl, Cost: entryCost(e)}, nil
	})
	// Compiled parts, built or read from Redis, count against the same budget, once.
	s.sets.Reserve(s.parts.Bytes())
	if err != nil {
		if errors.Is(err, ErrInvalidRequest) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: load permissions: %w", ErrUnavailable, err)
	}
	return e, nil
}

// Ready reports whether the service can decide: the admin database answers.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.admin.Ping(ctx)
}

// DependencyHealth is one dependency's state for /health.
type DependencyHealth struct {
	Status  string        `json:"status"` // ok, degraded, down, disabled
	Latency time.Duration `json:"latency_ns"`
	Error   string        `json:"error,omitempty"`
}

// Health reports each dependency: the admin database, Redis, the listeners.
func (s *Service) Health(ctx context.Context) map[string]DependencyHealth {
	out := map[string]DependencyHealth{}
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := s.admin.Ping(pctx)
	cancel()
	h := DependencyHealth{Status: "ok", Latency: time.Since(start)}
	if err != nil {
		h.Status, h.Error = "down", err.Error()
	}
	out["admin_database"] = h

	rh := s.sets.Healthy()
	switch {
	case !rh.Enabled:
		out["redis"] = DependencyHealth{Status: "disabled"}
	case rh.OK:
		out["redis"] = DependencyHealth{Status: "ok", Latency: rh.Latency}
	default:
		// Decisions keep flowing from L1 and PostgreSQL.
		out["redis"] = DependencyHealth{Status: "degraded", Latency: rh.Latency, Error: rh.Err}
	}
	if _, down := s.floors.DownSince(authzsync.AdminDatabase); down {
		out["listeners"] = DependencyHealth{Status: "degraded", Error: "notifications from the admin database are not current (its listener is not up, or in relay mode no relay heartbeat is fresh): cached data is not trusted"}
	} else {
		out["listeners"] = DependencyHealth{Status: "ok"}
	}
	return out
}

// Decision ids are a random per-process prefix and a counter: unique across instances with
// overwhelming probability, and cheap on the hot path (no system call per decision). They are
// formatted idsPerBlock at a time into one string, handed out as substrings: a decision
// allocates nothing for its id but a share of a block (an id kept alive keeps its block's
// 1 KiB).
var (
	decisionPrefix = func() [8]byte {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return b
	}()
	decisionCounter atomic.Uint64
	decisionIDs     atomic.Pointer[idBlock]
)

const (
	idLen       = 32 // hex digits of prefix and counter
	idsPerBlock = 32
)

// idBlock is idsPerBlock formatted ids of consecutive counter values; next is the index of
// the first not handed out.
type idBlock struct {
	ids  string
	next atomic.Int64
}

func newDecisionID() string {
	for {
		blk := decisionIDs.Load()
		if blk != nil {
			if i := blk.next.Add(1) - 1; i < idsPerBlock {
				return blk.ids[i*idLen : (i+1)*idLen]
			}
		}
		// Exhausted (or none yet): a goroutine losing the race drops its block, whose counter
		// values are then never used; ids stay unique.
		decisionIDs.CompareAndSwap(blk, newIDBlock())
	}
}

func newIDBlock() *idBlock {
	first := decisionCounter.Add(idsPerBlock) - idsPerBlock + 1
	var buf [idsPerBlock * idLen]byte
	var b [16]byte
	copy(b[:8], decisionPrefix[:])
	for i := range idsPerBlock {
		binary.BigEndian.PutUint64(b[8:], first+uint64(i))
		hex.Encode(buf[i*idLen:], b[:])
	}
	return &idBlock{ids: string(buf[:])}
}

// IsUnavailable reports whether err means "could not decide".
func IsUnavailable(err error) bool {
	return err != nil && !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrUnauthenticated) &&
		!errors.Is(err, ErrUntrustedPrincipal) && !errors.Is(err, ErrNotServedInRegion)
}
