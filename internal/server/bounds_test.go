package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/pdp"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// lineMeter is a log sink that keeps only the length of the longest line and the count.
type lineMeter struct {
	mu      sync.Mutex
	longest int
	lines   int
	cur     int
}

func (m *lineMeter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			m.longest, m.cur = max(m.longest, m.cur), 0
			m.lines++
			continue
		}
		m.cur++
	}
	return len(p), nil
}

func randomText(n int) string {
	return strings.ToLower(rand.Text() + strings.Repeat("x", max(0, n-26)))[:n]
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestFloodOfHostileInputStaysBounded sends 10,000 distinct invalid permissions, tenant names
// and hosts through every transport. Afterwards /metrics holds a handful of series with short
// labels, log lines are short, and the heap has not kept what was sent.
func TestFloodOfHostileInputStaysBounded(t *testing.T) {
	const n = 10_000
	reg := prometheus.NewRegistry()
	logs := &lineMeter{}
	cfg := DefaultConfig()
	cfg.TenantHostPattern = "{tenant}.app.example.com"
	cfg.ForwardAuthHeaders = "traefik"
	srv, err := New(cfg, newFake(), loadTestRoutes(t), slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	require.NoError(t, err)
	grpcAPI := authzService{s: srv}
	ctx := context.Background()
	metricsSize := func() int {
		rec := httptest.NewRecorder()
		srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.Len()
	}
	// One of each kind first, so that the series every check creates exist before measuring.
	_, err = grpcAPI.Check(ctx, &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.read.tenant"})
	require.NoError(t, err)
	before, heapBefore := metricsSize(), heapInUse()

	// Every answer must refuse the request; the count of those that did not is asserted at the
	// end, so that the bounds are measured in any case.
	wrong := map[string]int{}
	expect := func(what string, ok bool) {
		if !ok {
			wrong[what]++
		}
	}
	// Permissions of 1 MiB, as in the report that found the problem.
	for range 20 {
		huge := "users.read." + strings.Repeat("a", 1<<20)
		_, err := grpcAPI.Check(ctx, &authzv1.CheckRequest{Subject: tokenSubject(""), Permission: huge})
		expect("1 MiB permission", status.Code(err) == codes.InvalidArgument)
	}
	for i := range n {
		// neoauthz.v1: invalid permissions, with and without a token, alone and in bulk.
		perm := fmt.Sprintf("%s.read.%d", randomText(1024), i) // upper case is not a segment
		perm = strings.ToUpper(perm[:1]) + perm[1:]
		for _, subj := range []*authzv1.Subject{tokenSubject(""), tokenSubject("alice-token"), tokenSubject("expired")} {
			_, err := grpcAPI.Check(ctx, &authzv1.CheckRequest{Subject: subj, Permission: perm})
			expect("grpc Check", status.Code(err) == codes.InvalidArgument)
		}
		_, err := grpcAPI.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: tokenSubject("alice-token"),
			Items: []*authzv1.CheckBulkItem{{Permission: "users.read.tenant"}, {Permission: perm}}})
		expect("grpc CheckBulk", status.Code(err) == codes.InvalidArgument)

		// ext_authz: tenant names from the path and from hosts, pinned permissions.
		name := randomText(4096)
		for _, req := range []struct{ path, host string }{
			{"/api/tenants/" + name + "/reports", "acme.app.example.com"},
			{"/api/reports", name + ".app.example.com"},
			{"/api/reports", name + "." + name + ".example.com"},
			{"/api/reports", strings.Repeat(name, 4) + ":443"},
		} {
			res, err := srv.Check(ctx, envoyRequest("GET", req.path, req.host, map[string]string{"authorization": "Bearer alice-token"}, nil))
			require.NoError(t, err)
			code := res.GetDeniedResponse().GetStatus().GetCode()
			expect("ext_authz tenant name or host", code == 400)
		}
		res, err := srv.Check(ctx, envoyRequest("GET", "/x", "", map[string]string{"authorization": "Bearer alice-token"},
			map[string]string{extPermission: perm}))
		require.NoError(t, err)
		expect("ext_authz pinned permission", res.GetDeniedResponse().GetStatus().GetCode() == 400)

		// Forward auth: tenant names from the path.
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/auth", nil)
		r.Header.Set("Authorization", "Bearer alice-token")
		r.Header.Set("X-Forwarded-Method", "GET")
		r.Header.Set("X-Forwarded-Uri", "/api/tenants/"+name+"/reports")
		r.Header.Set("X-Forwarded-Host", "acme.app.example.com")
		srv.HTTPHandler().ServeHTTP(rec, r)
		expect("forward auth tenant name", rec.Code == 400)
	}
	assert.Empty(t, wrong, "requests not refused, by kind")

	families, err := reg.Gather()
	require.NoError(t, err)
	series := 0
	for _, mf := range families {
		if mf.GetName() != "permission_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				assert.LessOrEqual(t, len(l.GetValue()), pdp.MaxPermissionBytes, "label %s is %d bytes long", l.GetName(), len(l.GetValue()))
			}
		}
	}
	assert.LessOrEqual(t, series, 12, "got %d permission_checks_total series, want a handful", series)
	after := metricsSize()
	assert.Less(t, after-before, 8<<10, "/metrics grew from %d to %d bytes", before, after)
	assert.Less(t, logs.longest, 2048, "got a log line of %d bytes", logs.longest)
	assert.Positive(t, logs.lines)
	grown := int64(heapInUse()) - int64(heapBefore)
	assert.Less(t, grown, int64(8<<20), "the heap grew by %d bytes", grown)
}

// TestInvalidRequestBeforeAuthentication: a permission that is invalid at every level is an
// invalid request whatever the credential (DESIGN §2, step 1), in every transport.
func TestInvalidRequestBeforeAuthentication(t *testing.T) {
	ts := startServer(t, newFake())
	client := authzv1.NewAuthorizationServiceClient(ts.conn)
	ctx := context.Background()
	for _, tok := range []string{"", "expired", "alice-token"} {
		_, err := client.Check(ctx, &authzv1.CheckRequest{Subject: tokenSubject(tok), Permission: "users.*.tenant"})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "token %q: got %v", tok, err)
		_, err = client.CheckBulk(ctx, &authzv1.CheckBulkRequest{Subject: tokenSubject(tok), Items: []*authzv1.CheckBulkItem{{Permission: "Users.read.tenant"}}})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "bulk, token %q: got %v", tok, err)
		hdr := map[string]string{}
		if tok != "" {
			hdr["authorization"] = "Bearer " + tok
		}
		res, err := ts.srv.Check(ctx, envoyRequest("GET", "/x", "", hdr, map[string]string{extPermission: "users.read.tenant.x"}))
		require.NoError(t, err)
		assert.Equal(t, int32(400), int32(res.GetDeniedResponse().GetStatus().GetCode()), "ext_authz, token %q", tok)
	}
	_, body := ts.get(t, "/metrics", nil)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "permission_checks_total{") {
			assert.NotContains(t, sc.Text(), "users.*", "an invalid permission is labelled invalid")
		}
	}
	assert.Contains(t, body, `permission="invalid"`)
}
