package server

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/routes"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// FuzzCheck drives neoauthz.v1 Check and Envoy ext_authz Check with random headers, paths,
// hosts, permissions, tokens, tenant bindings and versions. Whatever the input, neither panics,
// neither allows without a valid token and a permission the subject holds (or a public route),
// no allow crosses a tenant binding, and no answer is OK with a deny reason or the reverse.
// The seeds run with go test; go test -fuzz FuzzCheck explores further.
func FuzzCheck(f *testing.F) {
	for _, s := range []struct {
		method, path, host, auth, minVersion, extPerm, boundTenant, perm, token, owner, team, tenant string
		version                                                                                      uint64
	}{
		{"GET", "/api/reports", "", "Bearer alice-token", "", "", "", "reports.read.tenant", "alice-token", "", "", "", 0},
		{"GET", "/api/reports", "acme.app.example.com", "Bearer alice-token", "7", "", "", "users.read.tenant", "bob-token", "", "", "", 7},
		{"GET", "/api/reports", "globex.app.example.com", "Bearer alice-token", "", "", "", "users.*.tenant", "expired", "", "", "", 1},
		{"GET", "/api/tenants/globex/reports", "", "bearer alice-token", "x", "", "", "projects.read", "alice-token", "alice", "t1", "acme", 0},
		{"PUT", "/api/teams/t1/projects/9", "", "Bearer  alice-token", "", "", "", "projects.update", "root-token", "", "t1", "", 0},
		{"GET", "/x", "", "Bearer alice-token", "", "users.read.tenant", "acme", "tenants.read", "root-token", "", "", "globex", 0},
		{"GET", "/x", "", "Bearer bob-token", "", "users.read.tenant", "acme", "Users.read.tenant", "", "", "", "", 0},
		{"GET", "/healthz?x=1", "", "", "", "", "", "", "db-down", "", "", "", 0},
		{"GET", "/api/files/a/../../../healthz", "", "Bearer alice-token,Bearer root-token", "", "", "", "users.read", "idp-down", "u\x00", "", "", 0},
		{"DELETE", "/api/%2e%2e/healthz", "ACME.app.example.com:443", "Basic x", "99999999999999999999999", "files.read.tenant", "", "slow.op", "alice-token", "", "", "", 1 << 63},
	} {
		f.Add(s.method, s.path, s.host, s.auth, s.minVersion, s.extPerm, s.boundTenant, s.perm, s.token, s.owner, s.team, s.tenant, s.version)
	}
	fake := newFake()
	close(fake.release) // "slow.op.tenant" must not block the fuzzer
	cfg := DefaultConfig()
	cfg.TenantHostPattern = "{tenant}.app.example.com"
	table := loadTestRoutes(f)
	srv, err := New(cfg, fake, table, slog.New(slog.NewJSONHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	grpcAPI := authzService{s: srv}
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, method, path, host, auth, minVersion, extPerm, boundTenant, perm, token, owner, team, tenant string, version uint64) {
		// neoauthz.v1 Check.
		req := &authzv1.CheckRequest{Subject: tokenSubject(token), Permission: perm, ConsistencyToken: consistency.ForAdmin(version).String()}
		if owner != "" || team != "" || tenant != "" {
			req.Resource = &authzv1.Resource{OwnerId: owner, TeamId: team, Tenant: tenant}
		}
		resp, err := grpcAPI.Check(ctx, req)
		if err == nil {
			granted := resp.GetReason() == authzv1.Reason_REASON_GRANTED
			if resp.GetAllowed() != granted {
				t.Fatalf("Check answered allowed=%v with reason %v", resp.GetAllowed(), resp.GetReason())
			}
			if resp.GetAllowed() && !holds(fake, token, perm) {
				t.Fatalf("Check allowed %q for token %q, which does not hold it", perm, token)
			}
		}

		// Envoy ext_authz Check.
		headers := map[string]string{}
		if auth != "" {
			headers["authorization"] = auth
		}
		if minVersion != "" {
			headers[headerConsistency] = minVersion
		}
		ext := map[string]string{}
		if extPerm != "" {
			ext[extPermission] = extPerm
		}
		if boundTenant != "" {
			ext[extTenant] = boundTenant
		}
		eresp, err := srv.Check(ctx, envoyRequest(method, path, host, headers, ext))
		if err != nil {
			return // could not decide: Envoy's failure_mode_allow decides, never an OK from us
		}
		ok := eresp.GetOkResponse() != nil
		if ok != (codes.Code(eresp.GetStatus().GetCode()) == codes.OK) {
			t.Fatalf("ext_authz: OK response with status %v", eresp.GetStatus())
		}
		if !ok {
			if eresp.GetDeniedResponse() == nil {
				t.Fatalf("ext_authz: neither OK nor denied: %v", eresp)
			}
			return
		}
		reason := eresp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
		var m routes.Match
		var matchErr error
		if extPerm == "" {
			m, matchErr = table.Match(method, path)
		}
		switch reason {
		case "": // a public route's OK carries no metadata: nothing is asserted about the caller
			if extPerm != "" || matchErr != nil || !m.Route.Public {
				t.Fatalf("ext_authz: public OK for %s %q, which is no public route", method, path)
			}
		case "granted":
			tok, _ := bearerToken(auth)
			want := extPerm
			if want == "" {
				if matchErr != nil {
					t.Fatalf("ext_authz: OK for %s %q, which matches no route (%v)", method, path, matchErr)
				}
				want = m.Route.Permission
			}
			if !holds(fake, tok, want) {
				t.Fatalf("ext_authz: allowed %q for %q, which does not hold it", want, auth)
			}
			sub, _ := fake.SubjectFromToken(ctx, tok)
			for _, b := range []string{boundTenant, m.Tenant, srv.host.tenant(host)} {
				if b != "" && sub.Level == authn.LevelTenant && !strings.EqualFold(b, sub.TenantSlug) && b != sub.TenantID {
					t.Fatalf("ext_authz: allowed %s of tenant %s on a route bound to %q", sub.UserID, sub.TenantSlug, b)
				}
			}
		default:
			t.Fatalf("ext_authz: OK with reason %q", reason)
		}
	})
}

// holds reports whether token is one the test double accepts and its user holds perm.
func holds(f *fakeDecider, token, perm string) bool {
	sub, err := f.SubjectFromToken(context.Background(), token)
	return err == nil && slices.Contains(f.grants[sub.UserID], perm)
}
