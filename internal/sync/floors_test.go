package sync

import (
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFloorsOnlyRise(t *testing.T) {
	var f Floors
	assert.Zero(t, f.Floor("t1", "alice"))
	f.RaiseUser("t1", "alice", 5)
	assert.Equal(t, uint64(5), f.Floor("t1", "alice"))
	assert.Zero(t, f.Floor("t1", "bob"), "a user's floor is the user's own")
	assert.Zero(t, f.Floor("t2", "alice"), "tenants never mix")

	f.RaiseAll("t1", 3)
	assert.Equal(t, uint64(5), f.Floor("t1", "alice"), "a lower tenant floor does not lower a user's")
	assert.Equal(t, uint64(3), f.Floor("t1", "bob"))
	f.RaiseAll("t1", 2)
	assert.Equal(t, uint64(3), f.Floor("t1", "bob"), "floors never go down")
	f.RaiseAll("t1", 9)
	assert.Equal(t, uint64(9), f.Floor("t1", "alice"), "the tenant floor covers every user")
	f.RaiseUser("t1", "alice", 7)
	assert.Equal(t, uint64(9), f.Floor("t1", "alice"))
	assert.Equal(t, uint64(9), f.Seen("t1"))

	f.RaiseUser(PlatformScope, "alice", 4)
	assert.Equal(t, uint64(4), f.Floor(PlatformScope, "alice"))
	assert.Equal(t, uint64(9), f.Floor("t1", "alice"), "platform and tenant scopes never mix")
}

func TestDirectoryFloors(t *testing.T) {
	var f Floors
	f.RaiseDir("t1", 10)
	assert.Equal(t, uint64(10), f.DirFloor("t1"))
	assert.Zero(t, f.DirFloor("t2"))
	f.RaiseAllDirs(12)
	assert.Equal(t, uint64(12), f.DirFloor("t1"))
	assert.Equal(t, uint64(12), f.DirFloor("t2"))
	f.Heard(PlatformScope, 12)
	assert.Equal(t, uint64(12), f.Seen(PlatformScope))
	assert.Zero(t, f.Floor(PlatformScope, "x"), "hearing of a version invalidates nothing")
}

func TestDatabasesAreUntrustedUntilUp(t *testing.T) {
	var f Floors
	since, down := f.DownSince("db1")
	assert.True(t, down, "a database never listened to is not trusted")
	assert.True(t, since.IsZero())
	f.MarkUp("db1")
	_, down = f.DownSince("db1")
	assert.False(t, down)
	at := time.Now()
	f.MarkDown("db1", at)
	f.MarkDown("db1", at.Add(time.Second))
	since, down = f.DownSince("db1")
	assert.True(t, down)
	assert.Equal(t, at, since, "down since the first failure, not the latest retry")
	f.Forget("db1")
	_, down = f.DownSince("db1")
	assert.True(t, down)
}

func TestFloorsConcurrent(t *testing.T) {
	for _, scope := range []string{"t", PlatformScope} {
		var f Floors
		var wg gosync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := range uint64(1000) {
					f.RaiseAll(scope, v)
					f.RaiseUser(scope, "u", v+uint64(g))
					_ = f.Floor(scope, "u")
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, uint64(999+7), f.Floor(scope, "u"), "scope %q", scope)
		assert.Equal(t, uint64(999), f.Floor(scope, "other"), "scope %q", scope)
	}
}

func TestApplyNotifications(t *testing.T) {
	var f Floors
	var changed []string
	m := &Manager{floors: &f, onTenant: func(id string) { changed = append(changed, id) }, metrics: newMetrics(nil)}
	s := func(v string) *string { return &v }
	m.Apply(Notification{Level: "tenant", TenantID: s("t1"), Kind: "user", UserID: s("alice"), Version: 4})
	assert.Equal(t, uint64(4), f.Floor("t1", "alice"))
	assert.Zero(t, f.Floor("t1", "bob"))
	m.Apply(Notification{Level: "tenant", TenantID: s("t1"), Kind: "role", RoleID: s("r"), Version: 6})
	assert.Equal(t, uint64(6), f.Floor("t1", "bob"), "a role change invalidates the tenant")
	m.Apply(Notification{Level: "tenant", TenantID: s("t1"), Kind: "team", Version: 7})
	m.Apply(Notification{Level: "tenant", TenantID: s("t1"), Kind: "permission", Version: 8})
	assert.Equal(t, uint64(8), f.Floor("t1", "bob"))
	m.Apply(Notification{Level: "tenant", Kind: "user", UserID: s("x"), Version: 50})
	assert.Equal(t, uint64(8), f.Floor("t1", "x"), "tenant_template changes touch no tenant")
	m.Apply(Notification{Level: "tenant", TenantID: s("t1"), Kind: "tenant", Version: 30})
	assert.Equal(t, uint64(30), f.DirFloor("t1"))
	assert.Equal(t, []string{"t1"}, changed)
	m.Apply(Notification{Level: "platform", Kind: "user", UserID: s("root"), Version: 31})
	assert.Equal(t, uint64(31), f.Floor(PlatformScope, "root"))
	m.Apply(Notification{Level: "platform", Kind: "role", Version: 32})
	assert.Equal(t, uint64(32), f.Floor(PlatformScope, "anyone"))
}

// TestFloorNeverMissesARaceWithRaiseAll interleaves Floor with RaiseUser and RaiseAll:
// once a raise has returned, every Floor that starts later must be at least that high.
// RaiseAll raises the scope's floor and then drops per-user floors it covers; a Floor that
// read the scope's floor before the raise and the user map after the drop would see
// neither.
func TestFloorNeverMissesARaceWithRaiseAll(t *testing.T) {
	for _, scope := range []string{"t1", PlatformScope} {
		t.Run("scope="+scope, func(t *testing.T) {
			var f Floors
			var published atomic.Uint64 // the highest raise that has returned
			const rounds = 60000
			var wg gosync.WaitGroup
			var violations atomic.Int64
			done := make(chan struct{})
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-done:
							return
						default:
						}
						want := published.Load()
						if got := f.Floor(scope, "alice"); got < want {
							violations.Add(1)
						}
					}
				}()
			}
			for v := uint64(1); v <= rounds; v++ {
				f.RaiseUser(scope, "alice", 2*v-1)
				published.Store(2*v - 1)
				f.RaiseAll(scope, 2*v)
				published.Store(2 * v)
			}
			close(done)
			wg.Wait()
			assert.Zero(t, violations.Load(), "got Floor below a raise that had returned, want never")
			assert.Equal(t, uint64(2*rounds), f.Floor(scope, "alice"))
			assert.Equal(t, uint64(2*rounds), f.Seen(scope))
		})
	}
}
