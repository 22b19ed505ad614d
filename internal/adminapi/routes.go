package adminapi

import (
	"net/http"
	"strings"
)

// route is one row of the route table. The mux, the authorization of each request, the OpenAPI
// document and /docs are all built from the table, so they cannot drift apart.
type route struct {
	Method string
	Path   string // a net/http pattern path, also the OpenAPI path ({name} parameters)
	// Permission is what the caller must hold: "" for a public route, a code "r.a.scope" for a
	// code check, or "r.a" for a resource check on the tenant named by path parameter Tenant.
	Permission string
	Tenant     string
	Summary    string
	Tag        string
	Request    string   // schema name of the JSON body, "" for none
	Response   string   // schema name of data; "[]X" is an array of X, "" for none
	Query      []string // documented query parameters
	Status     int      // the success status
	// Raw routes write their own (non-envelope) response: /metrics, /docs, /openapi.json.
	Raw    bool
	handle func(*call) error
}

// pattern is the net/http mux pattern.
func (rt *route) pattern() string { return rt.Method + " " + rt.Path }

// public reports whether the route needs no token.
func (rt *route) public() bool { return rt.Permission == "" }

// resourceCheck reports whether the permission is decided against a tenant (resource check).
func (rt *route) resourceCheck() bool { return rt.Tenant != "" }

// pathParams lists the {name} parameters of the path, in order.
func (rt *route) pathParams() []string {
	var out []string
	for _, seg := range strings.Split(rt.Path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}"))
		}
	}
	return out
}

// errorStatuses are the error responses a route can give, for the OpenAPI document.
func (rt *route) errorStatuses() []int {
	out := []int{}
	if rt.Request != "" || len(rt.Query) > 0 {
		out = append(out, http.StatusBadRequest)
	}
	if !rt.public() {
		out = append(out, http.StatusUnauthorized, http.StatusForbidden)
	}
	if len(rt.pathParams()) > 0 {
		out = append(out, http.StatusNotFound)
	}
	if rt.Method != http.MethodGet && !rt.public() {
		out = append(out, http.StatusConflict)
	}
	if rt.Request != "" || len(rt.Query) > 0 {
		out = append(out, http.StatusUnprocessableEntity)
	}
	return append(out, http.StatusInternalServerError)
}

const (
	v1Admin   = "/api/v1/admin"
	v1Tenants = "/api/v1/tenants/{tenant}"
)

var pageQuery = []string{"page", "page_size"}

// routes is the route table. Platform-wide routes check a code at platform scope; routes about
// one tenant check "resource.action" against that tenant, so a platform administrator whose
// role is restricted to some tenants acts on those only.
func (s *Server) routes() []route {
	return []route{
		// Operational endpoints.
		{Method: "GET", Path: "/health", Summary: "Health of the admin database (status and latency)", Tag: "ops", Response: "Health", Status: 200, Raw: true, handle: s.health},
		{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics", Tag: "ops", Status: 200, Raw: true, handle: s.metricsHandler},
		{Method: "GET", Path: "/openapi.json", Summary: "This API's OpenAPI 3.1 document", Tag: "ops", Status: 200, Raw: true, handle: s.openAPIHandler},
		{Method: "GET", Path: "/docs", Summary: "Human-readable route table", Tag: "ops", Status: 200, Raw: true, handle: s.docsHandler},

		// Tenants.
		{Method: "POST", Path: v1Admin + "/tenants", Permission: "tenants.create.platform", Summary: "Provision a tenant (schema or database)", Tag: "tenants", Request: "CreateTenant", Response: "Tenant", Status: 201, handle: s.createTenant},
		{Method: "GET", Path: v1Admin + "/tenants", Permission: "tenants.read.platform", Summary: "List tenants (filters status, region)", Tag: "tenants", Response: "[]Tenant", Query: []string{"status", "region", "page", "page_size"}, Status: 200, handle: s.listTenants},
		{Method: "GET", Path: v1Admin + "/tenants/{id}", Permission: "tenants.read", Tenant: "id", Summary: "Get a tenant by id or slug", Tag: "tenants", Response: "Tenant", Status: 200, handle: s.getTenant},
		{Method: "PATCH", Path: v1Admin + "/tenants/{id}", Permission: "tenants.update", Tenant: "id", Summary: "Change a tenant's name or settings", Tag: "tenants", Request: "PatchTenant", Response: "Tenant", Status: 200, handle: s.patchTenant},
		{Method: "DELETE", Path: v1Admin + "/tenants/{id}", Permission: "tenants.delete", Tenant: "id", Summary: "Delete a tenant (soft; ?purge=true drops its data, with &delete_realm=true its Keycloak realm)", Tag: "tenants", Response: "Tenant", Query: []string{"purge", "delete_realm"}, Status: 200, handle: s.deleteTenant},
		{Method: "GET", Path: v1Admin + "/tenants/{id}/regions", Permission: "tenants.read", Tenant: "id", Summary: "Regions and registered databases holding a tenant's data", Tag: "tenants", Response: "TenantRegions", Status: 200, handle: s.tenantRegions},
		{Method: "POST", Path: v1Admin + "/tenants/{id}/suspend", Permission: "tenants.update", Tenant: "id", Summary: "Suspend an active tenant", Tag: "tenants", Response: "Tenant", Status: 200, handle: s.suspendTenant},
		{Method: "POST", Path: v1Admin + "/tenants/{id}/activate", Permission: "tenants.update", Tenant: "id", Summary: "Activate a suspended tenant", Tag: "tenants", Response: "Tenant", Status: 200, handle: s.activateTenant},
		{Method: "POST", Path: v1Admin + "/tenants/{id}/migrate", Permission: "migrations.write", Tenant: "id", Summary: "Migrate one tenant's schema (background job)", Tag: "migrations", Request: "MigrateTenant", Response: "MigrationJob", Status: 202, handle: s.migrateTenant},

		// Organizations (group tenants; soft delete, refused while they have tenants).
		{Method: "POST", Path: v1Admin + "/organizations", Permission: "organizations.create.platform", Summary: "Create an organization", Tag: "organizations", Request: "CreateOrganization", Response: "Organization", Status: 201, handle: s.createOrganization},
		{Method: "GET", Path: v1Admin + "/organizations", Permission: "organizations.read.platform", Summary: "List organizations (filter status; deleted ones only when asked for)", Tag: "organizations", Response: "[]Organization", Query: []string{"status", "page", "page_size"}, Status: 200, handle: s.listOrganizations},
		{Method: "GET", Path: v1Admin + "/organizations/{id}", Permission: "organizations.read.platform", Summary: "Get an organization by id or slug", Tag: "organizations", Response: "Organization", Status: 200, handle: s.getOrganization},
		{Method: "PATCH", Path: v1Admin + "/organizations/{id}", Permission: "organizations.update.platform", Summary: "Change an organization's name or status (active, suspended)", Tag: "organizations", Request: "PatchOrganization", Response: "Organization", Status: 200, handle: s.patchOrganization},
		{Method: "DELETE", Path: v1Admin + "/organizations/{id}", Permission: "organizations.delete.platform", Summary: "Delete an organization (soft; 409 while it has tenants not deleted)", Tag: "organizations", Response: "Organization", Status: 200, handle: s.deleteOrganization},
		{Method: "GET", Path: v1Admin + "/organizations/{id}/tenants", Permission: "organizations.read.platform", Summary: "List an organization's tenants (filter status; deleted ones only when asked for)", Tag: "organizations", Response: "[]Tenant", Query: []string{"status", "page", "page_size"}, Status: 200, handle: s.listOrganizationTenants},

		// Audit.
		{Method: "GET", Path: v1Admin + "/audit", Permission: "audit.read.platform", Summary: "List audit log entries (filters actor, action, target_type, target_id, tenant_id)", Tag: "audit", Response: "[]AuditEntry", Query: []string{"actor", "action", "target_type", "target_id", "tenant_id", "page", "page_size"}, Status: 200, handle: s.listAudit},
		{Method: "POST", Path: v1Admin + "/audit/verify", Permission: "audit.read.platform", Summary: "Verify the audit log's hash chain", Tag: "audit", Response: "AuditVerification", Status: 200, handle: s.verifyAudit},

		// Regions and the database registry.
		{Method: "POST", Path: v1Admin + "/regions", Permission: "regions.create.platform", Summary: "Create a region", Tag: "registry", Request: "CreateRegion", Response: "Region", Status: 201, handle: s.createRegion},
		{Method: "GET", Path: v1Admin + "/regions", Permission: "regions.read.platform", Summary: "List regions", Tag: "registry", Response: "[]Region", Status: 200, handle: s.listRegions},
		{Method: "POST", Path: v1Admin + "/database-connections", Permission: "databases.create.platform", Summary: "Register a database connection", Tag: "registry", Request: "CreateConnection", Response: "Connection", Status: 201, handle: s.registerConnection},
		{Method: "GET", Path: v1Admin + "/database-connections", Permission: "databases.read.platform", Summary: "List database connections (filters type, region, active)", Tag: "registry", Response: "[]Connection", Query: []string{"type", "region", "active", "page", "page_size"}, Status: 200, handle: s.listConnections},
		{Method: "GET", Path: v1Admin + "/database-connections/{id}", Permission: "databases.read.platform", Summary: "Get a database connection by id or name", Tag: "registry", Response: "Connection", Status: 200, handle: s.getConnection},
		{Method: "PATCH", Path: v1Admin + "/database-connections/{id}", Permission: "databases.update.platform", Summary: "Change is_active or max_consecutive_failures", Tag: "registry", Request: "PatchConnection", Response: "Connection", Status: 200, handle: s.patchConnection},
		{Method: "POST", Path: v1Admin + "/database-connections/{id}/deactivate", Permission: "databases.update.platform", Summary: "Take a database connection out of service", Tag: "registry", Response: "Connection", Status: 200, handle: s.deactivateConnection},
		{Method: "POST", Path: v1Admin + "/database-connections/{id}/health-check", Permission: "databases.update.platform", Summary: "Check a database connection now and record the outcome", Tag: "registry", Response: "Connection", Status: 200, handle: s.checkConnection},

		// Migrations.
		{Method: "POST", Path: v1Admin + "/migrations/apply", Permission: "migrations.write.platform", Summary: "Apply migrations (background job)", Tag: "migrations", Request: "ApplyMigrations", Response: "MigrationJob", Status: 202, handle: s.applyMigrations},
		{Method: "GET", Path: v1Admin + "/migrations/runs/{id}", Permission: "migrations.read.platform", Summary: "A migration run with its per-target results", Tag: "migrations", Response: "MigrationRun", Status: 200, handle: s.getMigrationRun},
		{Method: "GET", Path: v1Admin + "/migrations/status", Permission: "migrations.read.platform", Summary: "Migration state of every schema", Tag: "migrations", Response: "[]MigrationStatus", Query: []string{"scope", "tenant"}, Status: 200, handle: s.migrationStatus},
	}
}

// appendRBACRoutes is split out so the RBAC files own their rows of the table.
func (s *Server) allRoutes() []route {
	rs := s.routes()
	rs = append(rs, s.platformRBACRoutes()...)
	rs = append(rs, s.tenantRBACRoutes()...)
	rs = append(rs, s.decisionRoutes()...)
	return rs
}
