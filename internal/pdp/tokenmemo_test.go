package pdp

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/consistency"
)

// TestTokenMemoNamesEveryTupleExactly asks for more version tuples than the memo has slots,
// from several goroutines and twice over, so that tuples replace one another in their slots:
// every answer must still name exactly the tuple asked for, with an encoding that parses back
// to it.
func TestTokenMemoNamesEveryTupleExactly(t *testing.T) {
	m := newTokenMemo()
	const tenants, versions = 40, 3 * tokenSlots / 40
	ids := make([]string, tenants)
	for i := range ids {
		ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012x", i)
	}
	check := func(tenant string, admin, version uint64) error {
		tok, text := m.get(tenant, admin, version)
		want := consistency.ForAdmin(admin)
		if tenant != "" {
			var err error
			if want, err = consistency.ForTenant(tenant, version); err != nil {
				return err
			}
			want.Admin = admin
		}
		parsed, err := consistency.Parse(text)
		if err != nil || !tok.Equal(want) || !parsed.Equal(want) || text != want.String() {
			return fmt.Errorf("%s@%d admin %d: got %+v %q, want %+v", tenant, version, admin, tok, text, want)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*2)
	for g := range 4 {
		wg.Go(func() {
			for round := range 2 {
				for v := range uint64(versions) {
					for i, id := range ids {
						if err := check(id, uint64(g)+v/7+1, v+1); err != nil {
							errs <- err
							return
						}
						if err := check("", uint64(i)+v+1, 0); err != nil {
							errs <- fmt.Errorf("round %d: %w", round, err)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTokenMemoHitDoesNotAllocate: a tuple answered with before costs no allocation, which
// is the point of the memo (every warm check names one).
func TestTokenMemoHitDoesNotAllocate(t *testing.T) {
	m := newTokenMemo()
	const id = "0b6a0c1e-8c3d-4f5e-9a7b-1c2d3e4f5a6b"
	_, first := m.get(id, 7, 9)
	require.NotEmpty(t, first)
	allocs := testing.AllocsPerRun(100, func() {
		if _, text := m.get(id, 7, 9); text != first {
			t.Fatalf("got %q, want %q", text, first)
		}
	})
	assert.Zero(t, allocs, "allocations per memo hit")
	// A tenant id that is no UUID (never one from the directory) names the admin part alone.
	tok, text := m.get("acme", 7, 9)
	assert.True(t, tok.Equal(consistency.ForAdmin(7)), "got %+v", tok)
	assert.Equal(t, consistency.ForAdmin(7).String(), text)
}
