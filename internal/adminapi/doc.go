// Package adminapi is the admin REST API of the neoauthz control plane (`admin serve`):
// tenants, regions, the database registry, migrations, platform and tenant RBAC, and the
// hash-chained audit log, behind platform-realm tokens and platform permissions decided in
// process by the decision engine.
package adminapi
