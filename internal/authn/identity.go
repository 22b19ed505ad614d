package authn

import "time"

// Level says which RBAC level an identity belongs to.
type Level uint8

// Levels. The zero value is invalid so that a forgotten assignment is never
// mistaken for a real level.
const (
	LevelTenant Level = iota + 1
	LevelPlatform
)

// String returns "tenant" or "platform".
func (l Level) String() string {
	switch l {
	case LevelTenant:
		return "tenant"
	case LevelPlatform:
		return "platform"
	default:
		return "invalid"
	}
}

// Identity is what a verified token says about its bearer. Validate builds
// it from the token cache's record on each call; its strings share memory
// with the record and with other identities': the tenant's, realm's and
// client's with every token of the tenant, the per-token ones with each other.
type Identity struct {
	// Level is LevelPlatform for the platform realm, LevelTenant otherwise.
	Level Level
	// TenantID and TenantSlug identify the tenant whose realm issued the
	// token; both are empty at platform level.
	TenantID   string
	TenantSlug string
	// Realm is the Keycloak realm that issued the token.
	Realm string
	// Subject is the token's sub: the user's external id.
	Subject string
	// AuthorizedParty is azp, the client the token was issued to.
	AuthorizedParty   string
	PreferredUsername string
	Email             string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
}
