package keycloak

// The request and response shapes of Keycloak's Admin REST API that neoauthz uses, and the
// paths they travel on, in one place so that a run against a real Keycloak can confirm them.
//
// Reference: Keycloak 26.0 "Admin REST API" (https://www.keycloak.org/docs-api/26.0/rest-api/)
// — RealmRepresentation, ClientRepresentation, ProtocolMapperRepresentation,
// UserRepresentation — and "Securing Applications: OpenID Connect" for the token endpoint
// (client credentials grant). The development issuer (internal/devidp) serves these same
// shapes and status codes: 201 with Location on create, 409 on a duplicate, 401 on a missing
// or refused service token, 404 on an unknown realm, client or user.
//
// Only the fields neoauthz reads or writes are declared; Keycloak accepts a partial
// representation on create and on update (PUT leaves absent fields unchanged).

// Paths, relative to the base URL (which carries /auth for Keycloak before 17).
const (
	// pathToken is POST (form: grant_type=client_credentials, client_id, client_secret).
	pathToken = "/realms/%s/protocol/openid-connect/token"
	// pathRealms is POST RealmRepresentation → 201, Location .../admin/realms/{realm}; 409 if it exists.
	pathRealms = "/admin/realms"
	// pathRealm is GET → RealmRepresentation, PUT RealmRepresentation → 204, DELETE → 204; 404 if unknown.
	pathRealm = "/admin/realms/%s"
	// pathClients is GET ?clientId=X → []ClientRepresentation; POST → 201, Location .../clients/{id}; 409 on a duplicate clientId.
	pathClients = "/admin/realms/%s/clients"
	// pathMappers is GET → []ProtocolMapperRepresentation; POST → 201; 409 on a duplicate name.
	pathMappers = "/admin/realms/%s/clients/%s/protocol-mappers/models"
	// pathUsers is GET ?username=X&exact=true → []UserRepresentation; POST → 201, Location .../users/{id}; 409 on a duplicate username or email.
	pathUsers = "/admin/realms/%s/users"
)

// TokenResponse is the token endpoint's answer (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

// TokenError is the token endpoint's error answer (RFC 6749 §5.2).
type TokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// ErrorRepresentation is the body of an Admin REST API error (409 and 400 carry errorMessage).
type ErrorRepresentation struct {
	ErrorMessage string `json:"errorMessage,omitempty"`
	Error        string `json:"error,omitempty"`
}

// RealmRepresentation is a realm. Lifespans are in seconds.
type RealmRepresentation struct {
	ID                    string            `json:"id,omitempty"`
	Realm                 string            `json:"realm,omitempty"`
	DisplayName           string            `json:"displayName,omitempty"`
	Enabled               *bool             `json:"enabled,omitempty"`
	AccessTokenLifespan   int               `json:"accessTokenLifespan,omitempty"`
	SSOSessionIdleTimeout int               `json:"ssoSessionIdleTimeout,omitempty"`
	SSOSessionMaxLifespan int               `json:"ssoSessionMaxLifespan,omitempty"`
	Attributes            map[string]string `json:"attributes,omitempty"`
}

// ClientRepresentation is an application (OIDC client) of a realm. ID is Keycloak's internal
// id (a UUID, used in paths); ClientID is the name tokens carry in azp.
type ClientRepresentation struct {
	ID                        string                         `json:"id,omitempty"`
	ClientID                  string                         `json:"clientId,omitempty"`
	Name                      string                         `json:"name,omitempty"`
	Enabled                   *bool                          `json:"enabled,omitempty"`
	Protocol                  string                         `json:"protocol,omitempty"`
	PublicClient              *bool                          `json:"publicClient,omitempty"`
	StandardFlowEnabled       *bool                          `json:"standardFlowEnabled,omitempty"`
	DirectAccessGrantsEnabled *bool                          `json:"directAccessGrantsEnabled,omitempty"`
	ServiceAccountsEnabled    *bool                          `json:"serviceAccountsEnabled,omitempty"`
	RedirectURIs              []string                       `json:"redirectUris,omitempty"`
	WebOrigins                []string                       `json:"webOrigins,omitempty"`
	Attributes                map[string]string              `json:"attributes,omitempty"`
	ProtocolMappers           []ProtocolMapperRepresentation `json:"protocolMappers,omitempty"`
}

// ProtocolMapperRepresentation adds claims to a client's tokens. The audience mapper
// (ProtocolMapper = MapperAudience) adds Config[ConfigCustomAudience] to aud.
type ProtocolMapperRepresentation struct {
	ID             string            `json:"id,omitempty"`
	Name           string            `json:"name,omitempty"`
	Protocol       string            `json:"protocol,omitempty"`
	ProtocolMapper string            `json:"protocolMapper,omitempty"`
	Config         map[string]string `json:"config,omitempty"`
}

// Protocol mapper type and configuration keys of the audience mapper.
const (
	ProtocolOIDC         = "openid-connect"
	MapperAudience       = "oidc-audience-mapper"
	ConfigCustomAudience = "included.custom.audience"
	ConfigAccessToken    = "access.token.claim"
	ConfigIDToken        = "id.token.claim"
)

// UserRepresentation is a user of a realm. ID becomes the sub of the user's tokens.
type UserRepresentation struct {
	ID              string   `json:"id,omitempty"`
	Username        string   `json:"username,omitempty"`
	Email           string   `json:"email,omitempty"`
	Enabled         *bool    `json:"enabled,omitempty"`
	EmailVerified   *bool    `json:"emailVerified,omitempty"`
	RequiredActions []string `json:"requiredActions,omitempty"`
}
