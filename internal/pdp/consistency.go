package pdp

import (
	"context"
	"fmt"
	"hash/maphash"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	authzsync "github.com/neofast/neoauthz/internal/sync"
)

// Await prepares the service for requests carrying tok, before their subject is
// established. It refuses (ErrInvalidRequest) a token naming a version its database has not
// reached, or a tenant that does not exist; it finds that out with at most one cheap version
// read per part, shared by every request that arrived before the read began, and only for a
// part newer than anything the service has heard of or confirmed. It never loads
// permission sets. When the admin part is newer than the notifications received, what
// identity caches (realm → tenant, verified tokens, tenant audiences) is dropped, so the
// subject is established from the admin database at least at that version.
//
// Check, CheckBulk and ListPermissions then honour every part through the request's
// Consistency field.
func (s *Service) Await(ctx context.Context, tok consistency.Token) error {
	if tok.IsZero() {
		return nil
	}
	arrived := time.Now()
	if tok.Admin > 0 && tok.Admin > s.floors.Seen(authzsync.PlatformScope) {
		if err := s.probes.exists(ctx, authzsync.PlatformScope, tok.Admin, arrived, s.store.AdminVersion); err != nil {
			return fmt.Errorf("consistency token, admin part: %w", err)
		}
		if authzsync.Raise(&s.identityAt, tok.Admin) {
			s.invalidateIdentity()
		}
	}
	for _, p := range tok.Tenants {
		if p.Version <= s.floors.Seen(p.ID) {
			continue
		}
		t, found, err := s.tenantAt(ctx, p.ID, tok.Admin, s.now())
		if err != nil {
			return err
		}
		if !found || t.ID != p.ID {
			return fmt.Errorf("%w: consistency token names tenant %s, which does not exist", ErrInvalidRequest, p.ID)
		}
		if !t.ServedBy(s.cfg.Regions) {
			// Its database is not read here: a check for the tenant is denied (not served
			// in this region), and the part concerns no other tenant.
			continue
		}
		read := func(ctx context.Context) (uint64, error) { return s.store.TenantVersion(ctx, t) }
		if err := s.probes.exists(ctx, p.ID, p.Version, arrived, read); err != nil {
			return fmt.Errorf("consistency token, tenant %s: %w", p.ID, err)
		}
	}
	return nil
}

// invalidateIdentity drops what subject establishment caches from the admin database.
func (s *Service) invalidateIdentity() {
	if s.validator != nil {
		s.validator.InvalidateAll()
	}
	for _, f := range s.identityCaches {
		f()
	}
}

// AlsoInvalidate registers f (e.g. a realm index's Invalidate) to run whenever the service
// drops its identity caches: on a tenant change and when a consistency token's admin part
// is newer than the notifications received. Call it before serving.
func (s *Service) AlsoInvalidate(f func()) { s.identityCaches = append(s.identityCaches, f) }

// probes finds out whether versions exist: per scope (PlatformScope for the admin database,
// else a tenant id), the highest version a read has confirmed, and the read under way.
type probes struct {
	mu        gosync.Mutex
	confirmed map[string]uint64
	running   map[string]*probe
}

type probe struct {
	started time.Time
	done    chan struct{}
	waiters int // callers waiting for it (guarded by probes.mu)
	version uint64
	err     error
}

// exists returns nil when version want of scope exists, ErrInvalidRequest when a read that
// started after the request arrived (at arrived) says it does not, or the read's error.
// Concurrent callers share one read; a read that began before a caller arrived does not
// prove a version absent for it (its write may have committed just after that read), so the
// caller waits for the next one.
func (p *probes) exists(ctx context.Context, scope string, want uint64, arrived time.Time,
	read func(context.Context) (uint64, error)) error {
	for {
		p.mu.Lock()
		if p.confirmed[scope] >= want {
			p.mu.Unlock()
			return nil
		}
		pr := p.running[scope]
		if pr == nil {
			pr = &probe{started: time.Now(), done: make(chan struct{})}
			if p.running == nil {
				p.running, p.confirmed = map[string]*probe{}, map[string]uint64{}
			}
			p.running[scope] = pr
			pr.waiters++
			p.mu.Unlock()
			go p.run(ctx, scope, pr, read)
		} else {
			pr.waiters++
			p.mu.Unlock()
		}
		select {
		case <-pr.done:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		if pr.err != nil {
			return fmt.Errorf("%w: read version: %w", ErrUnavailable, pr.err)
		}
		if pr.version >= want {
			return nil
		}
		if !pr.started.Before(arrived) {
			return fmt.Errorf("%w: it names version %d, the database is at %d", ErrInvalidRequest, want, pr.version)
		}
	}
}

// run reads a version for every waiter, detached from the first caller's cancellation.
func (p *probes) run(ctx context.Context, scope string, pr *probe, read func(context.Context) (uint64, error)) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	pr.version, pr.err = read(rctx)
	cancel()
	p.mu.Lock()
	if pr.err == nil && pr.version > p.confirmed[scope] {
		p.confirmed[scope] = pr.version
	}
	delete(p.running, scope)
	p.mu.Unlock()
	close(pr.done)
}

// tokenOf is the consistency token of the data a decision used — the admin version of the
// tenant directory entry (or the platform set), and the tenant's set version — and its
// encoding.
func (s *Service) tokenOf(r resolved, level authn.Level) (consistency.Token, string) {
	switch {
	case r.Entry == nil:
		return s.tokens.get("", r.tenant.AdminVersion, 0)
	case level == authn.LevelPlatform:
		return s.tokens.get("", r.Set.Version(), 0)
	default:
		return s.tokens.get(r.tenant.ID, r.AdminVersion, r.Set.Version())
	}
}

// tokenSlots is the number of version tuples tokenMemo holds at most.
const tokenSlots = 1024

// tokenMemo remembers encoded consistency tokens by version tuple. Nearly every answer names
// a tuple answered with before (a tenant's versions change only with its writes), so a warm
// check neither builds nor encodes a token. It is direct-mapped: a slot holds the last tuple
// hashed to it, and another tuple replaces it. Readers take no lock; entries are immutable.
type tokenMemo struct {
	seed  maphash.Seed
	slots [tokenSlots]atomic.Pointer[encodedToken]
}

// encodedToken is a token, the tuple it was built from, and its encoding. tok is shared by
// every answer naming the tuple: nothing may modify it.
type encodedToken struct {
	tenant         string // "" for a token with only an admin part
	admin, version uint64
	tok            consistency.Token
	text           string
}

func newTokenMemo() *tokenMemo { return &tokenMemo{seed: maphash.MakeSeed()} }

// get returns the token naming admin version admin and, when tenant is not "", version of
// tenant's schema, and its encoding.
func (m *tokenMemo) get(tenant string, admin, version uint64) (consistency.Token, string) {
	h := maphash.String(m.seed, tenant) ^ admin*0x9e3779b97f4a7c15 ^ version*0xc2b2ae3d27d4eb4f
	slot := &m.slots[(h^h>>32)%tokenSlots]
	if e := slot.Load(); e != nil && e.tenant == tenant && e.admin == admin && e.version == version {
		return e.tok, e.text
	}
	e := &encodedToken{tenant: tenant, admin: admin, version: version, tok: consistency.ForAdmin(admin)}
	if tenant != "" {
		// A tenant id that is not a UUID names no tenant part; the admin part still holds.
		if tok, err := consistency.ForTenant(tenant, version); err == nil {
			tok.Admin = admin
			e.tok = tok
		}
	}
	e.text = e.tok.String()
	slot.Store(e)
	return e.tok, e.text
}
