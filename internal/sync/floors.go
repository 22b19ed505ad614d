package sync

import (
	gosync "sync"
	"sync/atomic"
	"time"
)

// Floors holds, for each scope (a tenant, or the platform), the oldest version a cached
// value may have been computed at and still be used. Raising a floor is how a change
// invalidates: a value below its floor is a miss in every tier, whenever and however it was
// stored (a fill that raced with the change, a buffered L1 write landing late, another
// instance's old entry in Redis). Deleting entries is only about memory.
//
// Floors only ever rise. The zero value is ready to use.
type Floors struct {
	mu     gosync.RWMutex
	scopes map[string]*scope
	dbs    map[string]dbState // database key → listener state
	// dir is a floor on the admin version that applies to every tenant's directory entry:
	// raised when admin notifications may have been lost.
	dir atomic.Uint64
}

// PlatformScope is the scope key of platform-level data; tenant scopes are tenant ids.
const PlatformScope = ""

// dbState is a database's listener state. A database the pdp has never listened to is not
// up: nothing cached from it is trusted until its listener runs and its versions are read.
type dbState struct {
	up    bool
	since time.Time // when it went down (zero: never up)
	// until, when set, ends the trust by itself (relay mode: the last fresh heartbeat plus the
	// staleness bound), whether or not anything notices in time to mark the database down.
	until time.Time
}

type scope struct {
	all  atomic.Uint64 // every value of the scope
	dir  atomic.Uint64 // admin version of the tenant's directory entry (status, realm, placement)
	seen atomic.Uint64 // newest version heard of, from notifications or polls
	mu   gosync.RWMutex
	user map[string]uint64 // per-user floors above all
}

func (f *Floors) get(key string) *scope {
	f.mu.RLock()
	s := f.scopes[key]
	f.mu.RUnlock()
	if s != nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.scopes == nil {
		f.scopes = map[string]*scope{}
	}
	if s = f.scopes[key]; s == nil {
		s = &scope{}
		f.scopes[key] = s
	}
	return s
}

func (f *Floors) peek(key string) *scope {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.scopes[key]
}

// Raise sets a to v if v is higher, and reports whether it did.
func Raise(a *atomic.Uint64, v uint64) bool {
	for {
		cur := a.Load()
		if v <= cur {
			return false
		}
		if a.CompareAndSwap(cur, v) {
			return true
		}
	}
}

// Floor returns the version a value of (scope, user) must have reached to be used.
func (f *Floors) Floor(scopeKey, user string) uint64 {
	s := f.peek(scopeKey)
	if s == nil {
		return 0
	}
	// The user's floor is read before the scope's, both under the read lock. RaiseAll
	// raises the scope's floor before it drops the per-user floors that raise covers (under
	// the write lock), so a per-user floor read here is either still present, or was
	// dropped after a scope floor at least as high was in place, which the second read
	// sees. Reading them in the other order could miss both.
	s.mu.RLock()
	u := s.user[user]
	floor := s.all.Load()
	s.mu.RUnlock()
	return max(floor, u)
}

// DirFloor returns the admin version a tenant's directory entry (and anything computed from
// it) must have reached.
func (f *Floors) DirFloor(tenantID string) uint64 {
	floor := f.dir.Load()
	if s := f.peek(tenantID); s != nil {
		floor = max(floor, s.dir.Load())
	}
	return floor
}

// RaiseAll invalidates every value of the scope computed below version v.
func (f *Floors) RaiseAll(scopeKey string, v uint64) {
	s := f.get(scopeKey)
	Raise(&s.seen, v)
	if Raise(&s.all, v) {
		// Per-user floors at or below the scope's floor say nothing more.
		s.mu.Lock()
		for u, uv := range s.user {
			if uv <= v {
				delete(s.user, u)
			}
		}
		s.mu.Unlock()
	}
}

// RaiseUser invalidates the user's values of the scope computed below version v.
func (f *Floors) RaiseUser(scopeKey, user string, v uint64) {
	s := f.get(scopeKey)
	Raise(&s.seen, v)
	if v <= s.all.Load() {
		return
	}
	s.mu.Lock()
	if s.user == nil {
		s.user = map[string]uint64{}
	}
	if v > s.user[user] {
		s.user[user] = v
	}
	s.mu.Unlock()
}

// RaiseDir invalidates a tenant's directory entry read below admin version v.
func (f *Floors) RaiseDir(tenantID string, v uint64) { Raise(&f.get(tenantID).dir, v) }

// RaiseAllDirs invalidates every directory entry read below admin version v.
func (f *Floors) RaiseAllDirs(v uint64) { Raise(&f.dir, v) }

// Seen returns the newest version of the scope heard of.
func (f *Floors) Seen(scopeKey string) uint64 {
	if s := f.peek(scopeKey); s != nil {
		return s.seen.Load()
	}
	return 0
}

// MarkDown records that notifications from a database may be lost from now on (its
// listener is down).
func (f *Floors) MarkDown(db string, since time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dbs == nil {
		f.dbs = map[string]dbState{}
	}
	if st, ok := f.dbs[db]; !ok || st.up {
		if st.up && !st.until.IsZero() && st.until.Before(since) {
			since = st.until // its trust ran out before anyone noticed
		}
		f.dbs[db] = dbState{since: since}
	}
}

// MarkUp records that a database's listener runs and its versions were read after it
// started listening, so notifications cover every later change.
func (f *Floors) MarkUp(db string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dbs == nil {
		f.dbs = map[string]dbState{}
	}
	f.dbs[db] = dbState{up: true}
}

// MarkUpUntil records that a database's notifications are known to arrive (through a relay)
// until the given time: past it, the database counts as down since then unless MarkUpUntil
// extends the time first.
func (f *Floors) MarkUpUntil(db string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dbs == nil {
		f.dbs = map[string]dbState{}
	}
	f.dbs[db] = dbState{up: true, until: until}
}

// Forget drops a database that left the registry.
func (f *Floors) Forget(db string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.dbs, db)
}

// DownSince reports whether notifications from db may be missing, and since when (the
// zero time when it was never up).
func (f *Floors) DownSince(db string) (time.Time, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.dbs[db]
	if st.up && !st.until.IsZero() && !time.Now().Before(st.until) {
		return st.until, true
	}
	return st.since, !st.up
}

// Heard records that the scope's data reached version v without invalidating anything (an
// admin notification about one tenant still advances what the platform scope has heard).
func (f *Floors) Heard(scopeKey string, v uint64) { Raise(&f.get(scopeKey).seen, v) }
