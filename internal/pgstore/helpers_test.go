package pgstore_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

const region = "us-east-1"

// env is one test's control plane with a Store over it.
type env struct {
	w       *testenv.World
	primary registry.Connection
	store   *pgstore.Store
}

func newEnv(tb testing.TB, opts pgstore.Options) *env {
	tb.Helper()
	w := testenv.New(tb, "pgstore")
	primary := w.AddRegion(tb, region)
	st := pgstore.New(w.Admin, w.Registry, opts)
	tb.Cleanup(st.Close) // runs before the databases are dropped (cleanups run last-in first-out)
	return &env{w: w, primary: primary, store: st}
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// createTenant provisions an active tenant and returns it as the Store sees it, with a pool on
// its schema's database (owned by the test) for writing fixtures.
func (e *env) createTenant(tb testing.TB, req tenancy.CreateRequest) (pgstore.Tenant, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	if req.Region == "" {
		req.Region = region
	}
	tn, err := e.w.Tenants.Create(ctx, req)
	require.NoError(tb, err)
	t, err := e.store.Tenant(ctx, tn.ID)
	require.NoError(tb, err)
	return t, e.w.Connect(tb, e.primary, t.Database)
}

// table is a quoted schema-qualified table name for fixture SQL.
func table(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

func stateVersion(tb testing.TB, db *pgxpool.Pool, schema string) uint64 {
	tb.Helper()
	var v int64
	require.NoError(tb, db.QueryRow(context.Background(), `SELECT version FROM `+table(schema, "authz_state")).Scan(&v))
	return uint64(v)
}

// normalize sorts an Input's slices (and empties nil-or-empty ones) so Inputs compare
// structurally regardless of the order the database returned rows in.
func normalize(in decision.Input) decision.Input {
	out := in
	out.Roles = nil
	for _, r := range in.Roles {
		r.Permissions = sorted(r.Permissions)
		r.Inherits = sorted(r.Inherits)
		out.Roles = append(out.Roles, r)
	}
	slices.SortFunc(out.Roles, func(a, b decision.Role) int { return cmp.Compare(a.ID, b.ID) })
	out.Assignments = slices.Clone(in.Assignments)
	slices.SortFunc(out.Assignments, func(a, b decision.Assignment) int {
		return cmp.Or(cmp.Compare(a.RoleID, b.RoleID), cmp.Compare(a.Group, b.Group), a.ExpiresAt.Compare(b.ExpiresAt))
	})
	out.Direct = slices.Clone(in.Direct)
	slices.SortFunc(out.Direct, func(a, b decision.DirectPermission) int {
		return cmp.Or(cmp.Compare(a.Code, b.Code), cmp.Compare(a.Group, b.Group), boolCmp(a.Granted, b.Granted), a.ExpiresAt.Compare(b.ExpiresAt))
	})
	out.MemberOf = sorted(in.MemberOf)
	out.Descendants = nil // compared through closures, see closureOf
	if len(out.Roles) == 0 {
		out.Roles = nil
	}
	if len(out.Assignments) == 0 {
		out.Assignments = nil
	}
	if len(out.Direct) == 0 {
		out.Direct = nil
	}
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func sorted(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// closureOf returns g and everything below it in desc, sorted.
func closureOf(desc map[string][]string, g string) []string {
	seen := map[string]bool{g: true}
	out := []string{g}
	for i := 0; i < len(out); i++ {
		for _, c := range desc[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// sameDecisions compiles both Inputs at now and requires every request to be decided alike.
func sameDecisions(t *testing.T, label string, got, want decision.Input, now time.Time, reqs []decision.Request) {
	t.Helper()
	gotSet, err := decision.Compile(got, now)
	require.NoError(t, err)
	wantSet, err := decision.Compile(want, now)
	require.NoError(t, err)
	require.Empty(t, gotSet.Problem(), "%s: loaded set has a problem", label)
	for _, req := range reqs {
		g, gerr := gotSet.Check(now, req)
		w, werr := wantSet.Check(now, req)
		require.Equal(t, werr, gerr, "%s %+v: error", label, req)
		if g != w {
			t.Fatalf("%s %+v: got %+v, want %+v", label, req, g, w)
		}
	}
}
