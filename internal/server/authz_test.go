package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

func tokenSubject(tok string) *authzv1.Subject {
	return &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tok}}
}

func principalSubject(tenant, user string) *authzv1.Subject {
	return &authzv1.Subject{Kind: &authzv1.Subject_Principal{Principal: &authzv1.Principal{Tenant: tenant, User: user}}}
}

func TestAuthzCheck(t *testing.T) {
	ts := startServer(t, newFake())
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	ctx := context.Background()

	tests := []struct {
		name       string
		req        *authzv1.CheckRequest
		wantCode   codes.Code
		wantAllow  bool
		wantReason authzv1.Reason
	}{
		{"allow", &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.read.tenant"}, codes.OK, true, authzv1.Reason_REASON_GRANTED},
		{"deny no permission", &authzv1.CheckRequest{Subject: tokenSubject("bob-token"), Permission: "reports.read.tenant"}, codes.OK, false, authzv1.Reason_REASON_NO_PERMISSION},
		{"explicit deny", &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.delete.tenant"}, codes.OK, false, authzv1.Reason_REASON_EXPLICIT_DENY},
		{"unauthenticated expired", &authzv1.CheckRequest{Subject: tokenSubject("expired"), Permission: "users.read.tenant"}, codes.OK, false, authzv1.Reason_REASON_UNAUTHENTICATED},
		{"unauthenticated empty token", &authzv1.CheckRequest{Subject: tokenSubject(""), Permission: "users.read.tenant"}, codes.OK, false, authzv1.Reason_REASON_UNAUTHENTICATED},
		{"no subject", &authzv1.CheckRequest{Permission: "users.read.tenant"}, codes.InvalidArgument, false, 0},
		{"no permission", &authzv1.CheckRequest{Subject: tokenSubject("alice-token")}, codes.InvalidArgument, false, 0},
		{"engine refuses request", &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.*.tenant"}, codes.InvalidArgument, false, 0},
		{"could not decide", &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "fail.unavailable"}, codes.Unavailable, false, 0},
		{"internal failure", &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "fail.internal"}, codes.Internal, false, 0},
		{"identity provider down is not a 401", &authzv1.CheckRequest{Subject: tokenSubject("idp-down"), Permission: "users.read.tenant"}, codes.Unavailable, false, 0},
		{"database down", &authzv1.CheckRequest{Subject: tokenSubject("db-down"), Permission: "users.read.tenant"}, codes.Unavailable, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(ctx, tc.req)
			require.Equal(t, tc.wantCode, status.Code(err), "got %v, want code %v", err, tc.wantCode)
			if tc.wantCode != codes.OK {
				return
			}
			assert.Equal(t, tc.wantAllow, resp.GetAllowed(), "got allowed %v, want %v", resp.GetAllowed(), tc.wantAllow)
			assert.Equal(t, tc.wantReason, resp.GetReason(), "got reason %v, want %v", resp.GetReason(), tc.wantReason)
			assert.NotEmpty(t, resp.GetDecisionId(), "every decision has an id")
			if tc.wantAllow {
				assert.Equal(t, "users.read.tenant", resp.GetGrant().GetCode())
				assert.Equal(t, "member", resp.GetGrant().GetRole())
			} else {
				assert.Nil(t, resp.GetGrant(), "got a grant on a deny")
			}
		})
	}

	t.Run("resource and consistency token pass through", func(t *testing.T) {
		resp, err := client.Check(ctx, &authzv1.CheckRequest{
			Subject: tokenSubject("alice-token"), Permission: "projects.read",
			Resource:         &authzv1.Resource{OwnerId: "u-7", TeamId: "team-1"},
			ConsistencyToken: consistency.ForAdmin(42).String(),
		})
		require.NoError(t, err)
		assert.True(t, resp.GetAllowed())
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, &pdp.Resource{OwnerID: "u-7", TeamID: "team-1"}, last.Resource)
		assert.Equal(t, uint64(42), last.Consistency.Admin)
		back, err := consistency.Parse(resp.GetConsistencyToken())
		require.NoError(t, err)
		assert.Equal(t, uint64(42), back.Admin, "got token %+v, want the data used (admin 42)", back)
	})
	t.Run("bad consistency tokens are INVALID_ARGUMENT", func(t *testing.T) {
		for name, req := range map[string]*authzv1.CheckRequest{
			"malformed":        {ConsistencyToken: "15"},
			"impossible":       {ConsistencyToken: consistency.ForAdmin(fakeCurrentVersion + 1).String()},
			"at_least_version": {AtLeastVersion: 3},
		} {
			req.Subject, req.Permission = tokenSubject("alice-token"), "users.read.tenant"
			_, _, before := ts.fake.lastRequest()
			_, err := client.Check(ctx, req)
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "%s: got %v, want InvalidArgument", name, err)
			_, _, after := ts.fake.lastRequest()
			assert.Equal(t, before, after, "%s: the pdp was asked to decide", name)
		}
		_, err := client.Check(ctx, &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.read.tenant",
			ConsistencyToken: consistency.ForAdmin(fakeVersionDown).String()})
		assert.Equal(t, codes.Unavailable, status.Code(err), "got %v, want Unavailable when the version cannot be read", err)
	})
}

func TestAuthzCheckBulk(t *testing.T) {
	ts := startServer(t, newFake())
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	ctx := context.Background()

	t.Run("results in order", func(t *testing.T) {
		resp, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{
			Subject: tokenSubject("alice-token"),
			Items: []*authzv1.CheckBulkItem{
				{Permission: "users.read.tenant"},
				{Permission: "users.delete.tenant"},
				{Permission: "billing.read.tenant"},
				{Permission: "projects.read", Resource: &authzv1.Resource{OwnerId: "alice"}},
			},
			ConsistencyToken: consistency.ForAdmin(9).String(),
		})
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), 4)
		want := []authzv1.Reason{authzv1.Reason_REASON_GRANTED, authzv1.Reason_REASON_EXPLICIT_DENY, authzv1.Reason_REASON_NO_PERMISSION, authzv1.Reason_REASON_GRANTED}
		for i, r := range resp.GetResults() {
			assert.Equal(t, want[i], r.GetReason(), "item %d: got %v, want %v", i, r.GetReason(), want[i])
			assert.Equal(t, consistency.ForAdmin(9).String(), r.GetConsistencyToken())
		}
	})
	t.Run("more than 100 items refused", func(t *testing.T) {
		items := make([]*authzv1.CheckBulkItem, MaxBulkItems+1)
		for i := range items {
			items[i] = &authzv1.CheckBulkItem{Permission: fmt.Sprintf("p%d.read.tenant", i)}
		}
		_, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: tokenSubject("alice-token"), Items: items})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "got %v, want InvalidArgument", err)

		resp, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: tokenSubject("alice-token"), Items: items[:MaxBulkItems]})
		require.NoError(t, err, "exactly %d items are allowed", MaxBulkItems)
		assert.Len(t, resp.GetResults(), MaxBulkItems)
	})
	t.Run("item without permission", func(t *testing.T) {
		_, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: tokenSubject("alice-token"), Items: []*authzv1.CheckBulkItem{{}}})
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
	})
	t.Run("unauthenticated answers every item", func(t *testing.T) {
		resp, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{
			Subject: tokenSubject("expired"),
			Items:   []*authzv1.CheckBulkItem{{Permission: "users.read.tenant"}, {Permission: "reports.read.tenant"}},
		})
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), 2)
		for _, r := range resp.GetResults() {
			assert.False(t, r.GetAllowed())
			assert.Equal(t, authzv1.Reason_REASON_UNAUTHENTICATED, r.GetReason())
		}
	})
	t.Run("could not decide", func(t *testing.T) {
		_, err := client.CheckBulk(ctx, &authzv1.CheckBulkRequest{
			Subject: tokenSubject("alice-token"),
			Items:   []*authzv1.CheckBulkItem{{Permission: "users.read.tenant"}, {Permission: "fail.unavailable"}},
		})
		assert.Equal(t, codes.Unavailable, status.Code(err), "got %v, want Unavailable", err)
	})
}

func TestAuthzListPermissions(t *testing.T) {
	ts := startServer(t, newFake())
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	ctx := context.Background()

	resp, err := client.ListPermissions(ctx, &authzv1.ListPermissionsRequest{Subject: tokenSubject("bob-token"),
		ConsistencyToken: consistency.ForAdmin(11).String()})
	require.NoError(t, err)
	assert.Equal(t, []string{"users.read.tenant"}, resp.GetPermissions())
	assert.Equal(t, consistency.ForAdmin(11).String(), resp.GetConsistencyToken())
	_, err = client.ListPermissions(ctx, &authzv1.ListPermissionsRequest{Subject: tokenSubject("bob-token"), ConsistencyToken: "nz1.!"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "got %v, want InvalidArgument", err)

	_, err = client.ListPermissions(ctx, &authzv1.ListPermissionsRequest{Subject: tokenSubject("expired")})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "got %v, want Unauthenticated", err)
	assert.NotContains(t, err.Error(), "expired-token-text")

	_, err = client.ListPermissions(ctx, &authzv1.ListPermissionsRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestPrincipalTrust(t *testing.T) {
	ts := startServer(t, newFake(), withUnixSocket(t))
	ctx := context.Background()
	req := &authzv1.CheckRequest{Subject: principalSubject("acme", "alice"), Permission: "users.read.tenant"}

	t.Run("untrusted TCP caller refused", func(t *testing.T) {
		_, err := authzv1.NewAuthorizationServiceClient(ts.conn).Check(ctx, req)
		require.Equal(t, codes.PermissionDenied, status.Code(err), "got %v, want PermissionDenied", err)
		assert.Contains(t, status.Convert(err).Message(), "trusted")
		_, _, calls := ts.fake.lastRequest()
		assert.Zero(t, calls, "the decision service must not be asked for an untrusted principal")

		_, err = authzv1.NewAuthorizationServiceClient(ts.conn).ListPermissions(ctx, &authzv1.ListPermissionsRequest{Subject: principalSubject("acme", "alice")})
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
	})
	t.Run("Unix socket caller accepted", func(t *testing.T) {
		client := authzv1.NewAuthorizationServiceClient(ts.unixConn(t))
		resp, err := client.Check(ctx, req)
		require.NoError(t, err)
		assert.True(t, resp.GetAllowed(), "got %v, want allowed", resp)
		_, sub, _ := ts.fake.lastRequest()
		assert.Equal(t, "alice", sub.UserID)

		// Tokens work over the socket too.
		resp, err = client.Check(ctx, &authzv1.CheckRequest{Subject: tokenSubject("bob-token"), Permission: "users.read.tenant"})
		require.NoError(t, err)
		assert.True(t, resp.GetAllowed())
	})
	t.Run("principal without user", func(t *testing.T) {
		_, err := authzv1.NewAuthorizationServiceClient(ts.unixConn(t)).Check(ctx, &authzv1.CheckRequest{Subject: principalSubject("acme", ""), Permission: "x.y.z"})
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
	})
	t.Run("unknown principal is unauthenticated", func(t *testing.T) {
		resp, err := authzv1.NewAuthorizationServiceClient(ts.unixConn(t)).Check(ctx, &authzv1.CheckRequest{Subject: principalSubject("acme", "mallory"), Permission: "users.read.tenant"})
		require.NoError(t, err)
		assert.Equal(t, authzv1.Reason_REASON_UNAUTHENTICATED, resp.GetReason())
	})
}
