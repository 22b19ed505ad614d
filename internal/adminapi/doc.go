// Package adminapi is the admin REST API of the neoauthz control plane (`admin serve`):
// tenants, regions, the database registry, migrations, platform and tenant RBAC, and the
// hash-chained audit log, behind platform-realm tokens and platform permissions decided in
// process by the decision engine.
//
// No escalation: a platform RBAC write may only confer permissions the actor holds itself.
// Assigning a platform role confers the codes of the role and of the active roles it inherits
// (recursively); a direct grant confers its code; creating or patching a role confers the codes
// added to it and those of the roles it newly inherits. Denies, revocations and removals confer
// nothing. Each conferred code is expanded ('*' segments) against the platform catalog's concrete
// codes; an unrestricted conferral needs the actor to pass the code check of each (counting its
// unrestricted grants only), a conferral restricted to a tenant needs the resource check
// "resource.action" on that tenant. Otherwise the write is refused with 403 "cannot grant
// permissions you do not hold" (details.missing lists up to 20 codes) and nothing is written.
// `admin bootstrap` has no actor and is not subject to it.
package adminapi
