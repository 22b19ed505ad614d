package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/singleflight"

	"github.com/neofast/neoauthz/internal/authn"
)

// RealmIndex resolves realms from an in-memory copy of every tenant's realm, read in one
// query. The realm in a token is read before its signature is checked, so resolving each
// unknown realm with a query would let anyone make the pdp query the admin database once per
// made-up realm name; with the index, an unknown realm costs a map lookup. The copy is
// re-read after Invalidate (a tenant's status, realm or settings changed) or once it is older
// than MaxAge.
type RealmIndex struct {
	store *Store
	// MaxAge bounds how old the copy may get without an invalidation (default 30s).
	MaxAge time.Duration

	mu      sync.RWMutex
	realms  map[string]authn.TenantRealm
	loaded  time.Time
	stale   bool
	gen     uint64
	sf      singleflight.Group
	nowFunc func() time.Time
}

// NewRealmIndex returns an index over s's admin database.
func NewRealmIndex(s *Store) *RealmIndex {
	return &RealmIndex{store: s, MaxAge: 30 * time.Second, nowFunc: time.Now}
}

var _ authn.RealmResolver = (*RealmIndex)(nil)

// Invalidate makes the next resolution re-read the realms; a resolution arriving later never
// shares a read that began before.
func (x *RealmIndex) Invalidate() {
	x.mu.Lock()
	x.stale = true
	x.gen++
	x.mu.Unlock()
	x.sf.Forget("realms")
}

// ResolveRealm returns the tenant owning realm, or authn.ErrRealmNotFound.
func (x *RealmIndex) ResolveRealm(ctx context.Context, realm string) (authn.TenantRealm, error) {
	x.mu.RLock()
	fresh := x.realms != nil && !x.stale && x.nowFunc().Sub(x.loaded) < x.MaxAge
	tr, ok := x.realms[realm]
	x.mu.RUnlock()
	if !fresh {
		m, err := x.reload(ctx)
		if err != nil {
			return authn.TenantRealm{}, err
		}
		tr, ok = m[realm]
	}
	if !ok {
		return authn.TenantRealm{}, authn.ErrRealmNotFound
	}
	return tr, nil
}

// reload reads every realm once for all concurrent callers; a copy read before an
// invalidation that happened during the read is used by its callers but not kept as fresh.
func (x *RealmIndex) reload(ctx context.Context) (map[string]authn.TenantRealm, error) {
	v, err, _ := x.sf.Do("realms", func() (any, error) {
		x.mu.RLock()
		gen := x.gen
		x.mu.RUnlock()
		m, err := x.store.realms(ctx)
		if err != nil {
			return nil, err
		}
		x.mu.Lock()
		if x.gen == gen {
			x.realms, x.loaded, x.stale = m, x.nowFunc(), false
		}
		x.mu.Unlock()
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]authn.TenantRealm), nil
}

func (s *Store) realms(ctx context.Context) (map[string]authn.TenantRealm, error) {
	ctx, cancel := s.timeout(ctx, "realms")
	defer cancel()
	rows, err := s.admin.Query(ctx, `SELECT external_auth_realm, `+realmColumns+`
		  FROM admin.tenants WHERE status <> 'deleted'`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read realms: %w", err)
	}
	type row struct {
		realm string
		tr    authn.TenantRealm
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := scanRealm(r, &x.tr, &x.realm)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: read realms: %w", err)
	}
	m := make(map[string]authn.TenantRealm, len(list))
	for _, x := range list {
		m[x.realm] = x.tr
	}
	return m, nil
}
