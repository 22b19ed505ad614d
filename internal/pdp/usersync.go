package pdp

import (
	"context"
	"hash/maphash"
	"net/mail"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/cache"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/ratelimit"
)

// UserSyncConfig bounds just-in-time user sync: the writes the pdp makes, through a tenant's
// sync_user function, for tenants whose settings.user_sync.enabled is true.
type UserSyncConfig struct {
	// Rate is how many sync writes (user creations and profile updates) one tenant may cause
	// per second. Default 5.
	Rate float64
	// Burst is how many such writes a tenant may cause at once. Default 20.
	Burst int
	// ProfileInterval is the least time between two profile updates of one user (and
	// between two checks of one user's profile by this pdp). Default 1h.
	ProfileInterval time.Duration
	// Users bounds how many users' last synced profiles are remembered. Default 100,000.
	Users int
	// Concurrency bounds the profile updates under way at once (they run beside the
	// decisions; more are skipped and retried on a later token). Default 4.
	Concurrency int
}

func (c *UserSyncConfig) defaults() {
	if c.Rate <= 0 {
		c.Rate = 5
	}
	if c.Burst <= 0 {
		c.Burst = 20
	}
	if c.ProfileInterval <= 0 {
		c.ProfileInterval = time.Hour
	}
	if c.Users <= 0 {
		c.Users = 100_000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
}

// userSyncer is the store's write path for user sync (*pgstore.Store provides it).
type userSyncer interface {
	SyncTenantUser(ctx context.Context, t pgstore.Tenant, p pgstore.UserProfile, profileInterval time.Duration) (pgstore.SyncOutcome, uint64, error)
}

// Details of an unknown-user deny the pdp tried to sync.
const (
	DetailSyncRateLimited = "user sync rate limited"
	DetailSyncFailed      = "user sync failed"
)

// Results counted in user_sync_total{result}.
const (
	syncRateLimited = "rate_limited"
	syncError       = "error"
	syncSkipped     = "skipped" // profile update not started: too many under way
)

// userSync is the service's user-sync state.
type userSync struct {
	cfg    UserSyncConfig
	store  userSyncer // nil: the store cannot write, sync never happens
	total  *prometheus.CounterVec
	seed   maphash.Seed
	slots  chan struct{}
	wg     gosync.WaitGroup
	mu     gosync.Mutex
	bucket map[string]*ratelimit.Bucket // by tenant id: bounded by the tenants there are
	// profiles remembers, per user key, the hash of the profile last synced (or being
	// synced) until ProfileInterval has passed.
	profiles *cache.TTL[string, uint64]
}

func newUserSync(cfg UserSyncConfig, store Store, reg prometheus.Registerer, now func() time.Time) (*userSync, error) {
	cfg.defaults()
	u := &userSync{cfg: cfg, seed: maphash.MakeSeed(), slots: make(chan struct{}, cfg.Concurrency),
		bucket: map[string]*ratelimit.Bucket{}, profiles: cache.NewTTL[string, uint64](cfg.Users, cfg.ProfileInterval, now),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "user_sync_total",
			Help: "Just-in-time user sync attempts by result: created, unchanged, updated, deferred, disabled, rate_limited, skipped, error.",
		}, []string{"result"})}
	u.store, _ = store.(userSyncer)
	if reg != nil {
		if err := reg.Register(u.total); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// take takes one write from the tenant's bucket.
func (u *userSync) take(tenantID string, now time.Time) bool {
	u.mu.Lock()
	b, ok := u.bucket[tenantID]
	if !ok {
		b = ratelimit.NewBucket(u.cfg.Rate, float64(u.cfg.Burst))
		u.bucket[tenantID] = b
	}
	u.mu.Unlock()
	return b.Take(now)
}

// profileOf is what the token says of its bearer, each field dropped when it is not
// acceptable (the function checks again): the only input of a sync write.
func profileOf(id *authn.Identity) pgstore.UserProfile {
	p := pgstore.UserProfile{ExternalID: id.Subject}
	if e := id.Email; len(e) <= 320 && validID(e) {
		if a, err := mail.ParseAddress(e); err == nil && a.Address == e && a.Name == "" {
			p.Email = e
		}
	}
	if n := id.PreferredUsername; len(n) <= 200 && validID(n) {
		p.Username = n
	}
	return p
}

// hash is the token's profile claims as remembered per user: compared on every decision of a
// tenant with sync on, so it works on the raw claims (validating them allocates).
func (u *userSync) hash(id *authn.Identity) uint64 {
	var h maphash.Hash
	h.SetSeed(u.seed)
	_, _ = h.WriteString(id.Email)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(id.PreferredUsername)
	return h.Sum64()
}

// syncable reports whether the subject's token may create or update its user in tenant t:
// a verified token (never a principal) of t's own realm, naming the subject, of an active
// tenant with sync on.
func syncable(sub Subject, t pgstore.Tenant) bool {
	id := &sub.Identity
	return t.UserSync && t.Status == "active" && id.Level == authn.LevelTenant &&
		id.TenantID == t.ID && id.Realm == t.Realm && id.Realm != "" && id.Subject == sub.UserID &&
		sub.UserID != "" && validID(sub.UserID)
}

// synced returns the subject's set after user sync: for an unknown user, the set of the user
// created from the token (or the unknown-user set with a detail saying why not); for a known
// one, e itself, after starting a profile update when the token's profile changed.
func (s *Service) synced(ctx context.Context, sub Subject, t pgstore.Tenant, key, db string, atLeast uint64, now time.Time, e *Entry) (resolved, error) {
	u := s.users
	r := resolved{Entry: e, tenant: t}
	if u.store == nil || !syncable(sub, t) {
		return r, nil
	}
	if e.Set.Status() != decision.ReasonUnknownUser {
		s.maybeSyncProfile(ctx, t, key, &sub.Identity, now)
		return r, nil
	}
	p := profileOf(&sub.Identity)
	if !u.take(t.ID, now) {
		u.total.WithLabelValues(syncRateLimited).Inc()
		r.detail = DetailSyncRateLimited
		return r, nil
	}
	outcome, version, err := u.store.SyncTenantUser(ctx, t, p, u.cfg.ProfileInterval)
	if err != nil {
		u.total.WithLabelValues(syncError).Inc()
		s.log.ErrorContext(ctx, "user sync failed", "tenant", t.ID, "err", err)
		r.detail = DetailSyncFailed
		return r, nil
	}
	u.total.WithLabelValues(string(outcome)).Inc()
	if outcome == pgstore.SyncDisabled {
		return r, nil
	}
	u.profiles.Add(key, u.hash(&sub.Identity), now.Add(u.cfg.ProfileInterval))
	// The cached unknown-user set was computed below the write's version: raising the user's
	// floor makes it a miss here at once (the notification does so on every pdp), and the
	// load below reads at least the new row.
	s.floors.RaiseUser(t.ID, sub.UserID, version)
	e, err = s.get(ctx, key, t.ID, sub.UserID, db, t.AdminVersion, max(atLeast, version), now,
		s.tenantFill(t, sub.UserID, max(atLeast, version)))
	return resolved{Entry: e, tenant: t}, err
}

// maybeSyncProfile starts a profile update, beside the decision, when the token's profile
// differs from the one this pdp last synced for the user (or none is remembered) and the
// tenant's write budget allows. The function then compares with the row and writes only a
// change, at most once per ProfileInterval per user.
func (s *Service) maybeSyncProfile(ctx context.Context, t pgstore.Tenant, key string, id *authn.Identity, now time.Time) {
	u := s.users
	h := u.hash(id)
	if last, ok := u.profiles.Get(key); ok && last == h {
		return
	}
	p := profileOf(id)
	if p.Email == "" && p.Username == "" {
		// Nothing to write: remembered so the claims are not validated again.
		u.profiles.Add(key, h, now.Add(u.cfg.ProfileInterval))
		return
	}
	select {
	case u.slots <- struct{}{}:
	default:
		u.total.WithLabelValues(syncSkipped).Inc()
		return
	}
	if !u.take(t.ID, now) {
		<-u.slots
		u.total.WithLabelValues(syncRateLimited).Inc()
		return
	}
	// Remembered before the write so that the user's next decisions do not start another.
	u.profiles.Add(key, h, now.Add(u.cfg.ProfileInterval))
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		outcome, _, err := u.store.SyncTenantUser(ctx, t, p, u.cfg.ProfileInterval)
		if err != nil {
			u.profiles.Remove(key)
			u.total.WithLabelValues(syncError).Inc()
			s.log.ErrorContext(ctx, "user profile sync failed", "tenant", t.ID, "err", err)
			return
		}
		u.total.WithLabelValues(string(outcome)).Inc()
	}()
}

// WaitUserSync waits until the profile updates under way have finished.
func (s *Service) WaitUserSync() { s.users.wg.Wait() }
