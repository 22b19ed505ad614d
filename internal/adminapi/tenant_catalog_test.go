package adminapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A tenant's catalog takes custom codes (grammar-checked), which roles may then use; a code in
// use cannot be deleted; the list pages like every other list.
func TestTenantCatalog(t *testing.T) {
	e := newEnv(t)
	tenant := e.createTenant("acme")
	base := "/api/v1/tenants/" + tenant.Slug

	var p Permission
	e.must(201, "POST", base+"/permissions", map[string]any{"code": "invoices.read.tenant", "description": "Read invoices"}).into(&p)
	assert.Equal(t, "invoices.read.tenant", p.Code)
	assert.Equal(t, 409, e.do("POST", base+"/permissions", e.admin, map[string]any{"code": "invoices.read.tenant"}).Status, "a duplicate")
	for _, bad := range []string{"invoices.read", "Invoices.read.tenant", "invoices.read.platform", "a.b.c.d", "invoices..tenant"} {
		r := e.do("POST", base+"/permissions", e.admin, map[string]any{"code": bad})
		assert.Equal(t, 422, r.Status, "%q: %s", bad, r.Body)
	}
	e.must(201, "POST", base+"/roles", map[string]any{"code": "billing", "permissions": []string{"invoices.read.tenant"}})
	r := e.do("DELETE", base+"/permissions/invoices.read.tenant", e.admin, nil)
	assert.Equal(t, 409, r.Status, "deleting a code in use: %s", r.Body)
	e.must(200, "DELETE", base+"/roles/billing", nil)
	e.must(200, "DELETE", base+"/permissions/invoices.read.tenant", nil)
	assert.Equal(t, 404, e.do("DELETE", base+"/permissions/invoices.read.tenant", e.admin, nil).Status)

	var page []Permission
	r = e.must(200, "GET", base+"/permissions?page_size=2&page=2", nil)
	r.into(&page)
	assert.Len(t, page, 2, "page_size is honoured")
	total, ok := r.Meta["total"].(float64)
	require.True(t, ok, "meta.total: %v", r.Meta)
	assert.Greater(t, int(total), 2)
	assert.InDelta(t, 2, r.Meta["page"], 0)
}
