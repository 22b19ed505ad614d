package adminapi

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// reportLatency reports p50 and p99 of the samples in milliseconds.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	pct := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(float64(len(samples))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkProvisionTenant provisions schema tenants through the API (HTTP, authorization,
// provisioning, migration of the tenant schema, audit).
func BenchmarkProvisionTenant(b *testing.B) {
	e := newEnv(b)
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		slug := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		r := e.do("POST", "/api/v1/admin/tenants", e.admin, map[string]any{"slug": slug, "region": "eu-west-1", "external_auth_realm": slug})
		samples = append(samples, time.Since(start))
		if r.Status != 201 {
			b.Fatalf("got %d: %s", r.Status, r.Body)
		}
	}
	reportLatency(b, samples)
}

// BenchmarkRBACWrite assigns a role to a tenant user through the API (authorization, tenant
// write transaction, version read, audit append).
func BenchmarkRBACWrite(b *testing.B) {
	e := newEnv(b)
	e.createTenant("acme")
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		user := fmt.Sprintf("u%d", i)
		if r := e.do("POST", "/api/v1/tenants/acme/users", e.admin, map[string]any{"external_id": user}); r.Status != 201 {
			b.Fatalf("create user: %d %s", r.Status, r.Body)
		}
		b.StartTimer()
		start := time.Now()
		r := e.do("POST", "/api/v1/tenants/acme/users/"+user+"/roles", e.admin, map[string]any{"role": "member"})
		samples = append(samples, time.Since(start))
		if r.Status != 201 {
			b.Fatalf("got %d: %s", r.Status, r.Body)
		}
	}
	reportLatency(b, samples)
}
