package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
)

// envoyRequest builds a CheckRequest as Envoy sends it (headers map mode).
func envoyRequest(method, path, host string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// okHeaders returns the OK response's header options by name.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) map[string]*corev3.HeaderValueOption {
	t.Helper()
	ok := resp.GetOkResponse()
	require.NotNil(t, ok, "got %v, want an OK response", resp)
	out := map[string]*corev3.HeaderValueOption{}
	for _, h := range ok.GetHeaders() {
		out[h.GetHeader().GetKey()] = h
	}
	return out
}

// deniedBody decodes a denied response's JSON envelope.
func deniedBody(t *testing.T, resp *authv3.CheckResponse) envelope {
	t.Helper()
	d := resp.GetDeniedResponse()
	require.NotNil(t, d, "got %v, want a denied response", resp)
	var env envelope
	require.NoError(t, json.Unmarshal([]byte(d.GetBody()), &env), "body %q", d.GetBody())
	require.NotNil(t, env.Error, "body %q has no error", d.GetBody())
	assert.False(t, env.Success)
	return env
}

func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func TestExtAuthz(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) { c.TenantHostPattern = "{tenant}.app.example.com" })
	client := authv3.NewAuthorizationClient(ts.conn)
	ctx := context.Background()
	check := func(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(ctx, req)
		require.NoError(t, err, "a decision is never a gRPC error")
		return resp
	}

	t.Run("context_extensions permission allows", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/users", "app", bearer("alice-token"), map[string]string{"permission": "users.read.tenant"}))
		assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
		h := okHeaders(t, resp)
		assert.Equal(t, "acme", h["x-neoauthz-tenant"].GetHeader().GetValue())
		assert.Equal(t, "alice", h["x-neoauthz-user"].GetHeader().GetValue())
		assert.NotEmpty(t, h["x-neoauthz-decision-id"].GetHeader().GetValue())
		for name, opt := range h {
			assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, opt.GetAppendAction(), "header %s: got %v, want OVERWRITE_IF_EXISTS_OR_ADD", name, opt.GetAppendAction())
			// Field presence through protoreflect: the generated getter of the deprecated
			// append flag is itself deprecated.
			m := opt.ProtoReflect()
			appendField := m.Descriptor().Fields().ByName("append")
			require.NotNil(t, appendField, "HeaderValueOption has no append field")
			assert.False(t, m.Has(appendField), "header %s: the deprecated append flag must stay unset", name)
		}
		md := resp.GetDynamicMetadata().GetFields()
		assert.Equal(t, h["x-neoauthz-decision-id"].GetHeader().GetValue(), md["decision_id"].GetStringValue())
		assert.Equal(t, "granted", md["reason"].GetStringValue())
		assert.Equal(t, "7", md["version"].GetStringValue())
		assert.NotContains(t, md, "tenant", "minimal metadata: the tenant is in the headers")
		assert.NotContains(t, md, "user", "minimal metadata: the user is in the headers")
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "users.read.tenant", last.Permission)
		assert.Nil(t, last.Resource)
	})

	t.Run("forged identity header is overwritten", func(t *testing.T) {
		hdr := bearer("alice-token")
		hdr["x-neoauthz-user"] = "root"
		hdr["x-neoauthz-tenant"] = "globex"
		resp := check(t, envoyRequest("GET", "/api/reports", "app", hdr, nil))
		h := okHeaders(t, resp)
		assert.Equal(t, "alice", h["x-neoauthz-user"].GetHeader().GetValue())
		assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h["x-neoauthz-user"].GetAppendAction())
		assert.Equal(t, "acme", h["x-neoauthz-tenant"].GetHeader().GetValue())
		assert.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h["x-neoauthz-tenant"].GetAppendAction())
	})

	t.Run("route table with owner parameter", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/projects/u-9/p-1", "app", bearer("alice-token"), nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "projects.read", last.Permission)
		assert.Equal(t, &pdp.Resource{OwnerID: "u-9"}, last.Resource)
	})

	t.Run("route table with team parameter", func(t *testing.T) {
		resp := check(t, envoyRequest("PUT", "/api/teams/team-3/projects/p-1", "app", bearer("alice-token"), nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "projects.update", last.Permission)
		assert.Equal(t, &pdp.Resource{TeamID: "team-3"}, last.Resource)
	})

	t.Run("route tenant parameter binds the tenant and targets it for platform users", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/tenants/globex", "app", bearer("root-token"), nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "globex", last.BoundTenant)
		assert.Equal(t, &pdp.Resource{Tenant: "globex"}, last.Resource)
		// A platform subject has no tenant: the header is removed, not set empty.
		assert.Contains(t, resp.GetOkResponse().GetHeadersToRemove(), "x-neoauthz-tenant")
		_, hasTenant := okHeaders(t, resp)["x-neoauthz-tenant"]
		assert.False(t, hasTenant)

		resp = check(t, envoyRequest("GET", "/api/tenants/globex/reports", "app", bearer("alice-token"), nil))
		env := deniedBody(t, resp)
		assert.Equal(t, "cross_tenant", env.Error.Details.Reason)
		assert.Equal(t, int32(codes.PermissionDenied), resp.GetStatus().GetCode())
	})

	t.Run("public route needs no token and sets no identity", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/healthz", "app", nil, nil))
		assert.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
		ok := resp.GetOkResponse()
		require.NotNil(t, ok)
		assert.Empty(t, ok.GetHeaders())
		assert.ElementsMatch(t, []string{"x-neoauthz-tenant", "x-neoauthz-user", "x-neoauthz-decision-id"}, ok.GetHeadersToRemove())
	})

	t.Run("no route is a 403", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/unknown", "app", bearer("alice-token"), nil))
		assert.Equal(t, int32(codes.PermissionDenied), resp.GetStatus().GetCode())
		assert.Equal(t, int32(http.StatusForbidden), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
		env := deniedBody(t, resp)
		assert.Equal(t, "forbidden", env.Error.Code)
		assert.Equal(t, "no route", env.Error.Message)
		assert.Equal(t, "no_permission", env.Error.Details.Reason)
		assert.NotEmpty(t, env.Error.Details.DecisionID)
		assert.Equal(t, "application/json", deniedHeader(resp, "content-type"))
	})

	for _, p := range []string{"/a/%2e%2e/%2e%2e/x", "/api/files/a%2Fb", "/api/files/%00"} {
		t.Run("bad path "+p, func(t *testing.T) {
			resp := check(t, envoyRequest("GET", p, "app", bearer("alice-token"), nil))
			assert.Equal(t, int32(codes.InvalidArgument), resp.GetStatus().GetCode())
			assert.Equal(t, int32(http.StatusBadRequest), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
			env := deniedBody(t, resp)
			assert.Equal(t, "bad_request", env.Error.Code)
			assert.Equal(t, "bad_path", env.Error.Details.Reason)
		})
	}

	t.Run("query string does not change the permission", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/reports?permission=admin.manage.tenant&x=/api/admin", "app", bearer("alice-token"), nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "reports.read.tenant", last.Permission)
	})

	t.Run("deny is 403 with the envelope", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/reports", "app", bearer("bob-token"), nil))
		assert.Equal(t, int32(codes.PermissionDenied), resp.GetStatus().GetCode())
		assert.Equal(t, int32(http.StatusForbidden), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
		env := deniedBody(t, resp)
		assert.Equal(t, "forbidden", env.Error.Code)
		assert.Equal(t, "no_permission", env.Error.Details.Reason)
		assert.Regexp(t, `^d-\d+$`, env.Error.Details.DecisionID, "the pdp's decision id")
	})

	t.Run("unauthenticated: expired token", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/reports", "app", map[string]string{"authorization": "bearer expired"}, nil))
		assert.Equal(t, int32(codes.Unauthenticated), resp.GetStatus().GetCode())
		assert.Equal(t, int32(http.StatusUnauthorized), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
		www := deniedHeader(resp, "www-authenticate")
		assert.Equal(t, `Bearer realm="neoauthz", error="invalid_token", error_description="expired"`, www)
		env := deniedBody(t, resp)
		assert.Equal(t, "unauthenticated", env.Error.Code)
		assert.Equal(t, "unauthenticated", env.Error.Details.Reason)
		assert.Equal(t, "expired", env.Error.Details.AuthnError)
	})

	t.Run("unauthenticated: token text never echoed", func(t *testing.T) {
		const secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2ln"
		resp := check(t, envoyRequest("GET", "/api/reports", "app", bearer(secret), nil))
		assert.Equal(t, int32(codes.Unauthenticated), resp.GetStatus().GetCode())
		assert.NotContains(t, resp.String(), "c2VjcmV0LXBheWxvYWQ")
		assert.Contains(t, deniedHeader(resp, "www-authenticate"), `error="invalid_token"`)
	})

	for name, hdr := range map[string]map[string]string{
		"missing header": nil,
		"basic scheme":   {"authorization": "Basic YWxpY2U6cHc="},
	} {
		t.Run("unauthenticated: "+name, func(t *testing.T) {
			resp := check(t, envoyRequest("GET", "/api/reports", "app", hdr, nil))
			assert.Equal(t, int32(http.StatusUnauthorized), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
			// RFC 6750 §3.1: no error code when the request carried no bearer credential.
			assert.Equal(t, `Bearer realm="neoauthz"`, deniedHeader(resp, "www-authenticate"))
		})
	}

	t.Run("two authorization headers are not one token", func(t *testing.T) {
		req := envoyRequest("GET", "/api/reports", "app", nil, nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "authorization", RawValue: []byte("Bearer alice-token")},
			{Key: "authorization", RawValue: []byte("Bearer bob-token")},
		}}
		resp := check(t, req)
		assert.Equal(t, int32(codes.Unauthenticated), resp.GetStatus().GetCode())
	})

	t.Run("encode_raw_headers: header_map is read", func(t *testing.T) {
		req := envoyRequest("GET", "/api/reports", "app", nil, nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "authorization", RawValue: []byte("Bearer alice-token")},
			{Key: "x-neoauthz-consistency", RawValue: []byte(consistency.ForAdmin(31).String())},
		}}
		resp := check(t, req)
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, uint64(31), last.Consistency.Admin)
	})

	t.Run("could not decide is a gRPC error, never OK", func(t *testing.T) {
		for _, req := range []*authv3.CheckRequest{
			envoyRequest("GET", "/api/broken", "app", bearer("alice-token"), nil),
			envoyRequest("GET", "/api/reports", "app", bearer("db-down"), nil),
			envoyRequest("GET", "/api/reports", "app", bearer("idp-down"), nil),
			envoyRequest("GET", "/x", "app", bearer("alice-token"), map[string]string{"permission": "fail.internal"}),
		} {
			resp, err := client.Check(ctx, req)
			assert.Equal(t, codes.Unavailable, status.Code(err), "got %v, want Unavailable", err)
			assert.Nil(t, resp)
		}
	})

	t.Run("engine refusal is a 400", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/x", "app", bearer("alice-token"), map[string]string{"permission": "users.*.tenant"}))
		assert.Equal(t, int32(http.StatusBadRequest), int32(resp.GetDeniedResponse().GetStatus().GetCode()))
	})

	t.Run("x-neoauthz-consistency passes through and comes back", func(t *testing.T) {
		hdr := bearer("alice-token")
		sent := consistency.ForAdmin(234).String()
		hdr["x-neoauthz-consistency"] = sent
		resp := check(t, envoyRequest("GET", "/api/reports", "app", hdr, nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, uint64(234), last.Consistency.Admin)
		assert.Equal(t, sent, resp.GetDynamicMetadata().GetFields()["consistency_token"].GetStringValue())
		var back string
		for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
			if h.GetHeader().GetKey() == "x-neoauthz-consistency" {
				back = h.GetHeader().GetValue()
			}
		}
		assert.Equal(t, sent, back, "got %q to the client, want the token of the data used", back)

		// Denials carry it too.
		resp = check(t, envoyRequest("GET", "/x", "app", hdr, map[string]string{"permission": "billing.read.tenant"}))
		require.NotNil(t, resp.GetDeniedResponse())
		var denied string
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-neoauthz-consistency" {
				denied = h.GetHeader().GetValue()
			}
		}
		assert.Equal(t, sent, denied)
	})

	t.Run("bad consistency tokens are a 400, and the pdp is not asked", func(t *testing.T) {
		for name, hdrs := range map[string]map[string]string{
			"malformed":   {"x-neoauthz-consistency": "1234"},
			"two headers": {"x-neoauthz-consistency": consistency.ForAdmin(3).String() + "," + consistency.ForAdmin(4).String()},
			"impossible":  {"x-neoauthz-consistency": consistency.ForAdmin(fakeCurrentVersion + 1).String()},
			"replaced":    {"x-neoauthz-min-version": "12"},
		} {
			hdr := bearer("alice-token")
			for k, v := range hdrs {
				hdr[k] = v
			}
			_, _, before := ts.fake.lastRequest()
			resp := check(t, envoyRequest("GET", "/api/reports", "app", hdr, nil))
			assert.Equal(t, int32(http.StatusBadRequest), int32(resp.GetDeniedResponse().GetStatus().GetCode()), name)
			_, _, after := ts.fake.lastRequest()
			assert.Equal(t, before, after, "%s: the pdp was asked to decide", name)
			assert.NotContains(t, string(deniedBody(t, resp).Error.Message), "1234", name)
		}
		hdr := bearer("alice-token")
		hdr["x-neoauthz-consistency"] = consistency.ForAdmin(fakeVersionDown).String()
		_, err := client.Check(ctx, envoyRequest("GET", "/api/reports", "app", hdr, nil))
		assert.Equal(t, codes.Unavailable, status.Code(err), "got %v, want a gRPC error when the version cannot be read", err)
	})

	t.Run("context_extensions tenant binding", func(t *testing.T) {
		ext := map[string]string{"permission": "users.read.tenant", "tenant": "globex"}
		resp := check(t, envoyRequest("GET", "/api/users", "app", bearer("alice-token"), ext))
		assert.Equal(t, "cross_tenant", deniedBody(t, resp).Error.Details.Reason)

		resp = check(t, envoyRequest("GET", "/api/users", "app", bearer("bob-token"), ext))
		okHeaders(t, resp)
	})

	t.Run("host pattern tenant binding", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/reports", "globex.app.example.com", bearer("alice-token"), nil))
		assert.Equal(t, "cross_tenant", deniedBody(t, resp).Error.Details.Reason)

		resp = check(t, envoyRequest("GET", "/api/reports", "ACME.app.example.com:443", bearer("alice-token"), nil))
		okHeaders(t, resp)
		last, _, _ := ts.fake.lastRequest()
		assert.Equal(t, "acme", last.BoundTenant)

		// A header the client controls never binds a tenant.
		hdr := bearer("alice-token")
		hdr["x-neoauthz-tenant"] = "globex"
		hdr["x-forwarded-host"] = "globex.app.example.com"
		resp = check(t, envoyRequest("GET", "/api/reports", "app", hdr, nil))
		okHeaders(t, resp)
		last, _, _ = ts.fake.lastRequest()
		assert.Empty(t, last.BoundTenant)
	})

	t.Run("conflicting bindings are refused", func(t *testing.T) {
		resp := check(t, envoyRequest("GET", "/api/tenants/acme/reports", "globex.app.example.com", bearer("alice-token"), nil))
		env := deniedBody(t, resp)
		assert.Equal(t, "cross_tenant", env.Error.Details.Reason)
		assert.Equal(t, msgTenantConflict, env.Error.Message)
	})
}

// TestExtAuthzFullMetadata: with -ext-authz-metadata full, an allow's dynamic metadata also
// names the tenant and the user; a deny's stays decision_id and reason.
func TestExtAuthzFullMetadata(t *testing.T) {
	ts := startServer(t, newFake(), func(c *Config) { c.ExtAuthzMetadata = MetadataFull })
	client := authv3.NewAuthorizationClient(ts.conn)
	resp, err := client.Check(context.Background(),
		envoyRequest("GET", "/api/users", "app", bearer("alice-token"), map[string]string{"permission": "users.read.tenant"}))
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), resp.GetStatus().GetCode())
	md := resp.GetDynamicMetadata().GetFields()
	assert.Equal(t, "granted", md["reason"].GetStringValue())
	assert.Equal(t, "acme", md["tenant"].GetStringValue())
	assert.Equal(t, "alice", md["user"].GetStringValue())
	assert.Equal(t, "7", md["version"].GetStringValue())
	assert.Equal(t, okHeaders(t, resp)["x-neoauthz-decision-id"].GetHeader().GetValue(), md["decision_id"].GetStringValue())

	resp, err = client.Check(context.Background(), envoyRequest("GET", "/api/reports", "app", bearer("bob-token"), nil))
	require.NoError(t, err)
	require.Equal(t, int32(codes.PermissionDenied), resp.GetStatus().GetCode())
	md = resp.GetDynamicMetadata().GetFields()
	assert.NotEmpty(t, md["decision_id"].GetStringValue())
	assert.NotEmpty(t, md["reason"].GetStringValue())
	assert.Len(t, md, 2, "got %v, want decision_id and reason", md)
}
