package adminapi

// platformRBACRoutes are the platform RBAC endpoints (platform users, roles, assignments);
// not built yet — bootstrap and SQL manage platform RBAC meanwhile.
func (s *Server) platformRBACRoutes() []route { return nil }

// rbacSchemas are the RBAC endpoints' schemas.
func rbacSchemas() map[string]schema {
	ts := strf("date-time")
	return map[string]schema{
		"TenantUser":       obj(schema{"id": strf("uuid"), "external_id": str(), "email": str(), "display_name": str(), "status": str(), "created_at": ts}, "id", "external_id"),
		"CreateTenantUser": obj(schema{"external_id": str(), "email": str(), "display_name": str()}, "external_id"),
		"Permission":       obj(schema{"id": strf("uuid"), "code": str(), "description": str(), "is_wildcard": boolean()}, "code"),
		"Role": obj(schema{"id": strf("uuid"), "code": str(), "name": str(), "level": str(), "is_system": boolean(),
			"is_active": boolean(), "inherits": arr(str()), "permissions": arr(str())}, "id", "code"),
		"CreateRole": obj(schema{"code": str(), "name": str(), "level": enum("owner", "admin", "manager", "member", "viewer", "guest"),
			"inherits": arr(str()), "permissions": arr(str())}, "code"),
		"AssignRole":     obj(schema{"role": str(), "team": str(), "expires_at": ts}, "role"),
		"RoleAssignment": obj(schema{"id": strf("uuid"), "user_id": strf("uuid"), "role_id": strf("uuid"), "role": str(), "team_id": strf("uuid"), "expires_at": ts}),
		"EffectivePermission": obj(schema{"permission": str(), "reason": str(), "grant_code": str(), "direct": boolean(),
			"role": str(), "team": str()}, "permission"),
	}
}
