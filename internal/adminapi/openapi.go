package adminapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Schema helpers: JSON Schema (2020-12, as OpenAPI 3.1 uses) written compactly.
type schema = map[string]any

func str() schema                { return schema{"type": "string"} }
func strf(format string) schema  { return schema{"type": "string", "format": format} }
func integer() schema            { return schema{"type": "integer"} }
func number() schema             { return schema{"type": "number"} }
func boolean() schema            { return schema{"type": "boolean"} }
func anyObject() schema          { return schema{"type": "object"} }
func enum(vals ...string) schema { return schema{"type": "string", "enum": vals} }
func arr(items schema) schema    { return schema{"type": "array", "items": items} }
func ref(name string) schema     { return schema{"$ref": "#/components/schemas/" + name} }

// Identifier grammars, as the handlers and the database check them.
const (
	slugPattern          = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
	realmPattern         = `^[a-z0-9][a-z0-9_-]{0,99}$`
	tenantRoleCodeRe     = `^[a-z_][a-z0-9_]{0,62}$`
	platformRoleCodeRe   = `^[a-z][a-z0-9_-]{0,62}$`
	tenantPermissionRe   = `^([a-z0-9_-]+|\*)\.([a-z0-9_-]+|\*)\.(own|team|tenant|\*)$`
	platformPermissionRe = `^([a-z0-9_-]+|\*)\.([a-z0-9_-]+|\*)\.(user|tenant|platform|\*)$`
)

// pat is a string with a pattern and an example satisfying it.
func pat(pattern, example string) schema {
	return schema{"type": "string", "pattern": pattern, "example": example}
}

func obj(props schema, required ...string) schema {
	s := schema{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

// schemas are the named schemas routes refer to. A route naming a schema missing here fails
// New (and so every test), so the document cannot reference what it does not define.
func schemas() map[string]schema {
	ts := strf("date-time")
	m := map[string]schema{
		"Meta": {"type": "object", "properties": schema{
			"request_id": str(), "version": integer(), "consistency_token": str(), "page": integer(), "page_size": integer(),
			"total": integer(), "total_pages": integer(), "purged": boolean(), "organization_id": strf("uuid"),
		}},
		"Error": obj(schema{
			"success": schema{"const": false},
			"error":   obj(schema{"code": str(), "message": str(), "details": anyObject()}, "code", "message"),
			"meta":    ref("Meta"),
		}, "success", "error"),
		"Health": obj(schema{"status": enum("ok", "unavailable"), "dependencies": schema{"type": "object",
			"additionalProperties": obj(schema{"status": str(), "latency_ms": number(), "error": str()})}}),
		"Organization": obj(schema{
			"id": strf("uuid"), "slug": str(), "name": str(), "status": enum("active", "suspended", "deleted"),
			"tenant_count": integer(), "created_at": ts, "updated_at": ts,
		}, "id", "slug", "name", "status"),
		"CreateOrganization": obj(schema{"slug": pat(slugPattern, "acme-group"), "name": str()}, "slug"),
		"PatchOrganization":  obj(schema{"name": str(), "status": enum("active", "suspended")}),
		"Tenant": obj(schema{
			"id": strf("uuid"), "organization_id": strf("uuid"), "slug": str(), "name": str(),
			"status": enum("provisioning", "active", "suspended", "deleted"), "deployment_type": enum("schema", "database"),
			"region": str(), "database_connection_id": strf("uuid"), "database_name": str(), "schema_name": str(),
			"external_auth_realm": str(), "settings": anyObject(), "provisioning_error": str(),
			"keycloak_realm_managed": boolean(), "created_at": ts, "updated_at": ts, "deleted_at": ts,
		}, "id", "slug", "name", "status"),
		"TenantRegions": obj(schema{
			"tenant_id": strf("uuid"), "slug": str(), "region": str(),
			"regions":   schema{"type": "array", "items": str(), "description": "every region holding the tenant's data; a pdp must serve all of them (-regions) to decide for the tenant"},
			"databases": arr(ref("TenantDatabase")),
		}, "tenant_id", "slug", "region", "regions", "databases"),
		"TenantDatabase": obj(schema{
			"region": str(), "connection_id": strf("uuid"), "connection": str(),
			"type": enum("primary", "replica", "analytics", "backup"), "database": str(), "schema": str(),
			"holds": enum("rbac", "rbac_replica", "decision_log"),
		}, "region", "connection_id", "connection", "type", "database", "holds"),
		"CreateTenant": obj(schema{
			"slug": schema{"type": "string", "pattern": slugPattern, "example": "acme-corp",
				"description": "not shaped like a uuid (paths take a tenant's id or slug)"},
			"name": str(), "region": pat(slugPattern, "us-east-1"), "deployment_type": enum("schema", "database"),
			"external_auth_realm": schema{"type": "string", "pattern": realmPattern, "example": "acme",
				"description": "the tenant's Keycloak realm; not the platform realm, unique whatever the case; " +
					"with create_keycloak_realm it may be omitted (the configured pattern names it, default tenant-{slug})"},
			"organization_id": schema{"type": "string", "description": "the organization's id or slug"},
			"create_keycloak_realm": schema{"type": "boolean", "description": "create the realm in Keycloak with an application " +
				"client whose tokens the tenant accepts (settings.audiences, settings.clients); a Keycloak failure leaves the tenant " +
				"provisioning with the error recorded, and repeating the request finishes it"},
			"keycloak_owner": obj(schema{"username": str(), "email": str()}, "username"),
		}, "slug", "region"),
		"PatchTenant": obj(schema{"name": str(), "settings": anyObject()}),
		"AuditEntry":  obj(schema{"id": integer(), "occurred_at": ts, "actor": str(), "action": str(), "target_type": str(), "target_id": str(), "tenant_id": strf("uuid"), "before": schema{}, "after": schema{}, "request_id": str(), "outbox_id": strf("uuid"), "prev_hash": strf("byte"), "hash": strf("byte")}, "id", "actor", "action", "hash"),
		"Decision": obj(schema{
			"decision_id": str(), "decided_at": ts, "tenant_id": strf("uuid"), "level": enum("tenant", "platform"),
			"user": str(), "permission": str(), "resource_owner": str(), "resource_team": str(), "resource_tenant": str(),
			"allowed": boolean(), "reason": str(), "grant_code": str(), "grant_role": str(), "grant_group": str(),
			"version": integer(), "transport": enum("extauthz", "forwardauth", "grpc", "authzen"), "method": str(), "path": str(),
			"client_addr": str(), "latency_us": integer(),
		}, "decision_id", "decided_at", "permission", "allowed", "reason", "transport"),
		"AuditVerification": obj(schema{"ok": boolean(), "rows_checked": integer(), "first_bad_id": integer(), "problem": str()}, "ok"),
		"Region":            obj(schema{"code": str(), "name": str(), "is_active": boolean(), "data_residency": boolean(), "created_at": ts}, "code"),
		"CreateRegion":      obj(schema{"code": pat(slugPattern, "eu-west-1"), "name": str(), "data_residency": boolean()}, "code"),
		"Connection": obj(schema{
			"id": strf("uuid"), "name": str(), "type": enum("primary", "replica", "analytics", "backup"), "region": str(),
			"host": str(), "port": integer(), "database": str(), "username": str(), "tls_mode": str(),
			"pool_min": integer(), "pool_max": integer(), "is_active": boolean(), "is_healthy": boolean(),
			"last_health_check": ts, "last_latency_ms": number(), "last_error": str(),
			"consecutive_failures": integer(), "max_consecutive_failures": integer(), "primary_id": strf("uuid"), "created_at": ts,
		}, "id", "name"),
		"CreateConnection": obj(schema{
			"name": pat(slugPattern, "eu-west-1-primary"), "type": enum("primary", "replica", "analytics", "backup"), "region": pat(slugPattern, "eu-west-1"), "host": str(),
			"port": integer(), "database": str(), "username": str(), "password": schema{"type": "string", "writeOnly": true},
			"tls_mode": str(), "pool_min": integer(), "pool_max": integer(), "max_consecutive_failures": integer(),
			"primary": schema{"type": "string", "description": "a replica's primary (name or id): same region and database"},
		}, "name", "region", "host", "database", "username"),
		"PatchConnection": obj(schema{"is_active": boolean(), "max_consecutive_failures": integer()}),
		"ApplyMigrations": obj(schema{"scope": enum("all", "admin", "regional", "tenants", "analytics"), "tenant": str(),
			"dry_run": boolean(), "repair": boolean(), "batch_size": integer(), "concurrency": integer()}),
		"MigrateTenant": obj(schema{"dry_run": boolean(), "repair": boolean()}),
		"MigrationJob":  obj(schema{"run_id": strf("uuid"), "status": str()}, "run_id"),
		"MigrationRun": obj(schema{"id": strf("uuid"), "scope": str(), "tenant_slug": str(), "action": str(),
			"dry_run": boolean(), "status": enum("running", "succeeded", "failed"), "requested_by": str(),
			"total": integer(), "succeeded": integer(), "failed": integer(), "started_at": ts, "finished_at": ts,
			"results": arr(ref("MigrationResult"))}, "id", "status"),
		"MigrationResult": obj(schema{"target": str(), "set": str(), "schema": str(), "status": str(),
			"from_version": str(), "to_version": str(), "applied": integer(), "error": str(), "duration_ms": number(), "finished_at": ts}),
		"MigrationStatus": obj(schema{"target": str(), "set": str(), "schema": str(), "current_version": str(),
			"latest_version": str(), "pending": arr(str()), "failed": arr(str()), "checksum_mismatches": arr(str()), "error": str()}),
	}
	for k, v := range rbacSchemas() {
		m[k] = v
	}
	return m
}

var statusText = map[int]string{
	400: "Bad request: the body is not valid JSON or has unknown fields",
	401: "Unauthenticated: no or invalid platform token",
	403: "Forbidden: the caller lacks the route's permission, or is not a platform user",
	404: "Not found",
	409: "Conflict with the current state",
	422: "Validation failed; details.fields names the offending fields",
	500: "Internal error (no details are disclosed)",
}

// buildOpenAPI renders the OpenAPI 3.1 document from the route table.
func (s *Server) buildOpenAPI() ([]byte, error) {
	defs := schemas()
	paths := map[string]schema{}
	errResp := func(code int) schema {
		return schema{"description": statusText[code], "content": schema{"application/json": schema{"schema": ref("Error")}}}
	}
	for _, rt := range s.table {
		op := schema{"summary": rt.Summary, "operationId": operationID(&rt), "tags": []string{rt.Tag}}
		if !rt.public() {
			op["security"] = []any{schema{"bearer": []string{}}}
			op["x-permission"] = permissionText(&rt)
		}
		var params []any
		for _, p := range rt.pathParams() {
			params = append(params, schema{"name": p, "in": "path", "required": true, "schema": str()})
		}
		for _, q := range rt.Query {
			ps := str()
			switch q {
			case "page":
				ps = schema{"type": "integer", "minimum": 1, "default": 1}
			case "page_size":
				ps = schema{"type": "integer", "minimum": 1, "maximum": MaxPageSize, "default": DefaultPageSize}
			}
			params = append(params, schema{"name": q, "in": "query", "required": false, "schema": ps})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.Request != "" {
			if _, ok := defs[rt.Request]; !ok {
				return nil, fmt.Errorf("adminapi: route %s: request schema %q is not defined", rt.pattern(), rt.Request)
			}
			op["requestBody"] = schema{"required": true, "content": schema{"application/json": schema{"schema": ref(rt.Request)}}}
		}
		ok := schema{"description": http.StatusText(rt.Status)}
		switch {
		case rt.Path == "/metrics":
			ok["content"] = schema{"text/plain": schema{"schema": str()}}
		case rt.Path == "/docs":
			ok["content"] = schema{"text/html": schema{"schema": str()}}
		case rt.Path == "/openapi.json":
			ok["content"] = schema{"application/json": schema{"schema": anyObject()}}
		case rt.Response != "":
			name := strings.TrimPrefix(rt.Response, "[]")
			if _, found := defs[name]; !found {
				return nil, fmt.Errorf("adminapi: route %s: response schema %q is not defined", rt.pattern(), name)
			}
			data := ref(name)
			if strings.HasPrefix(rt.Response, "[]") {
				data = arr(data)
			}
			ok["content"] = schema{"application/json": schema{"schema": obj(schema{
				"success": schema{"const": true}, "data": data, "meta": ref("Meta")}, "success")}}
		}
		ok["headers"] = schema{HeaderRequestID: schema{"description": "the request id (the caller's, when short and printable)", "schema": str()}}
		if rt.Method != http.MethodGet && rt.Response != "" {
			ok["headers"].(schema)[HeaderConsistency] = schema{
				"description": "the consistency token of the write (also meta.consistency_token): send it to the pdp to read your own write",
				"schema":      str()}
		}
		responses := schema{strconv.Itoa(rt.Status): ok}
		for _, code := range rt.errorStatuses() {
			responses[strconv.Itoa(code)] = errResp(code)
		}
		op["responses"] = responses
		if paths[rt.Path] == nil {
			paths[rt.Path] = schema{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	doc := schema{
		"openapi": "3.1.0",
		"info": schema{"title": "neoauthz admin API", "version": "1.0.0",
			"description": "Control plane of neoauthz: tenants, registry, migrations, RBAC, audit log."},
		"paths": paths,
		"components": schema{
			"schemas":         defs,
			"securitySchemes": schema{"bearer": schema{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func operationID(rt *route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, seg := range strings.Split(rt.Path, "/") {
		seg = strings.Trim(seg, "{}")
		if seg == "" || seg == "api" || seg == "v1" {
			continue
		}
		for _, part := range strings.FieldsFunc(seg, func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}
