package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults of Provisioning.
const (
	DefaultRealmPattern        = "tenant-{slug}"
	DefaultAppClientID         = "app"
	DefaultAudience            = "neoauthz"
	DefaultAccessTokenLifespan = 5 * time.Minute
	// SSO sessions of created realms: Keycloak's own defaults (30 minutes idle, 10 hours).
	defaultSessionIdle = 30 * time.Minute
	defaultSessionMax  = 10 * time.Hour
)

// Environment variables read by ProvisioningFromEnv.
const (
	EnvRealmPattern     = "NEOAUTHZ_KEYCLOAK_REALM_PATTERN"
	EnvAppClientID      = "NEOAUTHZ_KEYCLOAK_APP_CLIENT_ID"
	EnvAudience         = "NEOAUTHZ_KEYCLOAK_AUDIENCE"
	EnvRedirectURIs     = "NEOAUTHZ_KEYCLOAK_REDIRECT_URIS"
	EnvTokenLifespan    = "NEOAUTHZ_KEYCLOAK_ACCESS_TOKEN_LIFESPAN"
	EnvDisableOnSuspend = "NEOAUTHZ_KEYCLOAK_DISABLE_ON_SUSPEND"
)

// TenantAttribute is the realm attribute naming the tenant a realm was created for: the
// ownership mark. neoauthz reconciles, disables and deletes only realms carrying its tenant's
// id there, never one it did not create.
const TenantAttribute = "neoauthz.tenant"

// ErrNotOwned is returned for a realm that exists but was not created for this tenant.
var ErrNotOwned = errors.New("exists in keycloak and was not created for this tenant")

// Provisioning says what a tenant's realm looks like.
type Provisioning struct {
	// RealmPattern names a tenant's realm; {slug} stands for the tenant's slug.
	RealmPattern string
	// AppClientID is the clientId of the application client created in each realm; tokens
	// carry it in azp and the tenant accepts it (settings.clients).
	AppClientID string
	// Audience is put in aud by the client's audience mapper; the tenant accepts it
	// (settings.audiences).
	Audience string
	// RedirectURIs are the application client's valid redirect URIs (may be empty and set
	// later in Keycloak).
	RedirectURIs []string
	// AccessTokenLifespan is the realm's access token lifespan.
	AccessTokenLifespan time.Duration
	// DisableOnSuspend disables a tenant's realm when the tenant is suspended and enables it
	// when the tenant is activated.
	DisableOnSuspend bool
}

// ProvisioningFromEnv reads Provisioning with its defaults.
func ProvisioningFromEnv(getenv func(string) string) (Provisioning, error) {
	p := Provisioning{RealmPattern: getenv(EnvRealmPattern), AppClientID: getenv(EnvAppClientID),
		Audience: getenv(EnvAudience), AccessTokenLifespan: DefaultAccessTokenLifespan}
	if p.RealmPattern == "" {
		p.RealmPattern = DefaultRealmPattern
	}
	if p.AppClientID == "" {
		p.AppClientID = DefaultAppClientID
	}
	if p.Audience == "" {
		p.Audience = DefaultAudience
	}
	for _, u := range strings.Split(getenv(EnvRedirectURIs), ",") {
		if u = strings.TrimSpace(u); u != "" {
			p.RedirectURIs = append(p.RedirectURIs, u)
		}
	}
	var errs []error
	if v := getenv(EnvTokenLifespan); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 5m)", EnvTokenLifespan, v))
		}
		p.AccessTokenLifespan = d
	}
	if v := getenv(EnvDisableOnSuspend); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a boolean", EnvDisableOnSuspend, v))
		}
		p.DisableOnSuspend = b
	}
	if err := p.Validate(); err != nil {
		errs = append(errs, err)
	}
	return p, errors.Join(errs...)
}

var clientIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// Validate names what is wrong with p.
func (p Provisioning) Validate() error {
	var errs []error
	if strings.Count(p.RealmPattern, "{slug}") != 1 || !ValidRealmName(strings.ReplaceAll(p.RealmPattern, "{slug}", "x")) {
		errs = append(errs, fmt.Errorf("%s: %q must hold {slug} once, the rest lowercase letters, digits, _ and -", EnvRealmPattern, p.RealmPattern))
	}
	if !clientIDRe.MatchString(p.AppClientID) {
		errs = append(errs, fmt.Errorf("%s: %q is not a client id (letters, digits, . _ : -)", EnvAppClientID, p.AppClientID))
	}
	if !clientIDRe.MatchString(p.Audience) {
		errs = append(errs, fmt.Errorf("%s: %q is not an audience (letters, digits, . _ : -)", EnvAudience, p.Audience))
	}
	for _, u := range p.RedirectURIs {
		if len(u) > 500 || strings.ContainsAny(u, " \"\n") {
			errs = append(errs, fmt.Errorf("%s: %q is not a redirect URI", EnvRedirectURIs, u))
		}
	}
	if p.AccessTokenLifespan < 30*time.Second || p.AccessTokenLifespan > 24*time.Hour {
		errs = append(errs, fmt.Errorf("%s: %s is outside 30s..24h", EnvTokenLifespan, p.AccessTokenLifespan))
	}
	return errors.Join(errs...)
}

// RealmName is the realm a tenant with slug gets. Slugs are lowercase letters, digits and
// dashes, so a valid pattern gives a valid realm name (which the caller checks anyway).
func (p Provisioning) RealmName(slug string) string {
	return strings.ReplaceAll(p.RealmPattern, "{slug}", slug)
}

// Provisioner creates, disables and deletes tenants' realms.
type Provisioner struct {
	Client   *Client
	Settings Provisioning
}

// Owner is a tenant's first user, created in its realm.
type Owner struct {
	Username string `json:"username"`
	Email    string `json:"email,omitempty"`
}

var usernameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._@+-]{0,254}$`)

// Validate checks an owner's fields (Keycloak keeps usernames in lowercase).
func (o Owner) Validate() error {
	if !usernameRe.MatchString(o.Username) {
		return errors.New("username: use lowercase letters, digits and . _ @ + - (at most 255)")
	}
	if o.Email != "" {
		a, err := mail.ParseAddress(o.Email)
		if err != nil || a.Address != o.Email || len(o.Email) > 254 {
			return errors.New("email: not a plain email address")
		}
	}
	return nil
}

// TenantRealm asks for a tenant's realm.
type TenantRealm struct {
	Realm       string
	TenantID    string
	DisplayName string
	Owner       *Owner
}

// Result is what Ensure made (or found already made).
type Result struct {
	Realm    string `json:"realm"`
	ClientID string `json:"client_id"`
	Audience string `json:"audience"`
	// OwnerID is the owner's Keycloak id (the sub of the owner's tokens); empty without owner.
	OwnerID string `json:"owner_user_id,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// Ensure creates the tenant's realm, its application client with the audience mapper and
// the owner, or finishes what an earlier call left half done: whatever exists already is
// accepted when it carries the tenant's mark (a realm of that name that does not is refused,
// ErrNotOwned).
func (p *Provisioner) Ensure(ctx context.Context, spec TenantRealm) (Result, error) {
	res := Result{Realm: spec.Realm, ClientID: p.Settings.AppClientID, Audience: p.Settings.Audience}
	if err := p.ensureRealm(ctx, spec); err != nil {
		return res, err
	}
	id, err := p.ensureClient(ctx, spec.Realm)
	if err != nil {
		return res, err
	}
	if err := p.ensureAudienceMapper(ctx, spec.Realm, id); err != nil {
		return res, err
	}
	if spec.Owner != nil {
		if res.OwnerID, err = p.ensureOwner(ctx, spec.Realm, *spec.Owner); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (p *Provisioner) ensureRealm(ctx context.Context, spec TenantRealm) error {
	err := p.Client.CreateRealm(ctx, RealmRepresentation{
		Realm: spec.Realm, DisplayName: spec.DisplayName, Enabled: ptr(true),
		AccessTokenLifespan:   int(p.Settings.AccessTokenLifespan / time.Second),
		SSOSessionIdleTimeout: int(defaultSessionIdle / time.Second),
		SSOSessionMaxLifespan: int(defaultSessionMax / time.Second),
		Attributes:            map[string]string{TenantAttribute: spec.TenantID},
	})
	if !errors.Is(err, ErrConflict) {
		return err
	}
	_, err = p.owned(ctx, spec.Realm, spec.TenantID)
	return err
}

// owned returns realm when it carries tenantID's mark; ErrNotOwned when it carries another
// or none.
func (p *Provisioner) owned(ctx context.Context, realm, tenantID string) (RealmRepresentation, error) {
	r, err := p.Client.GetRealm(ctx, realm)
	if err != nil {
		return r, err
	}
	if r.Attributes[TenantAttribute] != tenantID {
		return r, fmt.Errorf("realm %s %w", realm, ErrNotOwned)
	}
	return r, nil
}

func (p *Provisioner) ensureClient(ctx context.Context, realm string) (string, error) {
	cl, err := p.Client.FindClient(ctx, realm, p.Settings.AppClientID)
	if err == nil {
		return cl.ID, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	id, err := p.Client.CreateClient(ctx, realm, ClientRepresentation{
		ClientID: p.Settings.AppClientID, Name: "neoauthz application", Enabled: ptr(true), Protocol: ProtocolOIDC,
		// A public client using the authorization code flow with PKCE: a browser or mobile
		// application signs users in and sends their access tokens to services behind neoauthz.
		PublicClient: ptr(true), StandardFlowEnabled: ptr(true), DirectAccessGrantsEnabled: ptr(false),
		ServiceAccountsEnabled: ptr(false), RedirectURIs: p.Settings.RedirectURIs,
		Attributes: map[string]string{"pkce.code.challenge.method": "S256"},
	})
	if errors.Is(err, ErrConflict) { // made meanwhile by a concurrent run
		cl, err = p.Client.FindClient(ctx, realm, p.Settings.AppClientID)
		return cl.ID, err
	}
	return id, err
}

const audienceMapperName = "neoauthz-audience"

func (p *Provisioner) ensureAudienceMapper(ctx context.Context, realm, clientUUID string) error {
	list, err := p.Client.ProtocolMappers(ctx, realm, clientUUID)
	if err != nil {
		return err
	}
	for _, m := range list {
		if m.ProtocolMapper == MapperAudience && m.Config[ConfigCustomAudience] == p.Settings.Audience && m.Config[ConfigAccessToken] == "true" {
			return nil
		}
		if m.Name == audienceMapperName {
			return fmt.Errorf("client %s of realm %s has a mapper %q that does not add audience %q to access tokens; fix or remove it in keycloak",
				p.Settings.AppClientID, realm, audienceMapperName, p.Settings.Audience)
		}
	}
	err = p.Client.CreateProtocolMapper(ctx, realm, clientUUID, ProtocolMapperRepresentation{
		Name: audienceMapperName, Protocol: ProtocolOIDC, ProtocolMapper: MapperAudience,
		Config: map[string]string{ConfigCustomAudience: p.Settings.Audience, ConfigAccessToken: "true", ConfigIDToken: "false"},
	})
	if errors.Is(err, ErrConflict) {
		return p.ensureAudienceMapper(ctx, realm, clientUUID)
	}
	return err
}

func (p *Provisioner) ensureOwner(ctx context.Context, realm string, o Owner) (string, error) {
	u, err := p.Client.FindUser(ctx, realm, o.Username)
	if err == nil {
		return u.ID, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	// No password: the owner sets one through Keycloak's required action (an operator sends
	// the "execute actions" email or sets a temporary password in Keycloak).
	id, err := p.Client.CreateUser(ctx, realm, UserRepresentation{Username: o.Username, Email: o.Email,
		Enabled: ptr(true), EmailVerified: ptr(false), RequiredActions: []string{"UPDATE_PASSWORD"}})
	if errors.Is(err, ErrConflict) {
		u, err = p.Client.FindUser(ctx, realm, o.Username)
		return u.ID, err
	}
	return id, err
}

// SetEnabled enables or disables the tenant's realm (ErrNotOwned when it is not the
// tenant's); changed reports whether it had to change.
func (p *Provisioner) SetEnabled(ctx context.Context, realm, tenantID string, enabled bool) (changed bool, err error) {
	r, err := p.owned(ctx, realm, tenantID)
	if err != nil {
		return false, err
	}
	if r.Enabled != nil && *r.Enabled == enabled {
		return false, nil
	}
	return true, p.Client.UpdateRealm(ctx, realm, RealmRepresentation{Realm: realm, Enabled: ptr(enabled)})
}

// Delete deletes the tenant's realm; existed reports whether it existed. A realm that is not
// the tenant's is refused (ErrNotOwned).
func (p *Provisioner) Delete(ctx context.Context, realm, tenantID string) (existed bool, err error) {
	if _, err := p.owned(ctx, realm, tenantID); errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	err = p.Client.DeleteRealm(ctx, realm)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
