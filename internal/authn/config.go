package authn

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultClockSkew                 = 30 * time.Second
	DefaultMaxTokenBytes             = 8192
	DefaultJWKSRefreshInterval       = 5 * time.Minute
	DefaultUnknownKidRefetchInterval = 30 * time.Second
	DefaultUnknownKidTTL             = time.Minute
	DefaultMaxKeyAge                 = 24 * time.Hour
	DefaultCacheSize                 = 100_000
	DefaultCacheMaxBytes             = 64 << 20
	DefaultCacheTTL                  = 5 * time.Minute
	DefaultRealmCacheTTL             = 30 * time.Second
	DefaultRealmCacheSize            = 10_000
	DefaultHTTPTimeout               = 10 * time.Second
)

// maxTokenBytesLimit bounds MaxTokenBytes so a typo cannot make the
// validator hash and parse megabytes per request.
const maxTokenBytesLimit = 1 << 20

// DefaultAllowedAlgorithms returns the default signature algorithm
// allow-list: every asymmetric JWS algorithm Keycloak can use.
func DefaultAllowedAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// Config configures a Validator. Zero-valued fields take the defaults above.
type Config struct {
	// TrustedIssuerBases are the Keycloak base URLs whose realms may issue
	// tokens, e.g. "https://sso.example.com". A token's iss must equal
	// "<base>/realms/<realm>" exactly for one of them. Bases are normalised
	// once (lower-case scheme and host, no trailing slash). Required.
	TrustedIssuerBases []string
	// PlatformRealm is the realm whose tokens carry platform-level
	// identities. Empty means no realm is the platform realm.
	PlatformRealm string
	// Audiences are the accepted audiences: a token's aud must contain one of
	// them (azp does not count). A tenant's own TenantRealm.Audiences are
	// accepted in addition for that tenant's tokens. Required unless
	// AllowAnyAudience is set, so a token minted for another service is never
	// accepted by default.
	Audiences []string
	// AllowAnyAudience accepts tokens whatever their aud when no audience is
	// configured (globally or, for a tenant's tokens, by the tenant). It must be
	// set explicitly, and not together with Audiences.
	AllowAnyAudience bool
	// Clients are the accepted clients: when they are non-empty (globally or,
	// for a tenant's tokens, together with TenantRealm.Clients) a token's azp —
	// the client the token was issued to — must be one of them.
	Clients []string
	// AllowedAlgorithms is the JWS alg allow-list. Only asymmetric algorithms
	// are accepted; Validate refuses HS* and none.
	AllowedAlgorithms []string
	// ClockSkew is the tolerance applied to exp, nbf and iat.
	ClockSkew time.Duration
	// MaxTokenBytes bounds the token length; longer tokens are refused before
	// any parsing or hashing.
	MaxTokenBytes int
	// JWKSRefreshInterval is how often Run refreshes every known realm's keys.
	JWKSRefreshInterval time.Duration
	// UnknownKidRefetchInterval is the minimum time between two request-
	// triggered key fetches for one realm (unknown kid, or no usable keys),
	// so garbage tokens cannot turn into a fetch storm against Keycloak.
	UnknownKidRefetchInterval time.Duration
	// UnknownKidTTL is how long a kid found missing from a freshly fetched
	// key set is remembered as unknown, so repeating it triggers no fetch.
	UnknownKidTTL time.Duration
	// MaxKeyAge is how long the last successfully fetched keys keep working
	// when Keycloak cannot be reached.
	MaxKeyAge time.Duration
	// CacheSize bounds the verified-token cache (entries).
	CacheSize int
	// CacheMaxBytes bounds the verified-token cache in bytes of estimated retained memory
	// (claims, the key and the LRU's bookkeeping; about 320 bytes for a typical Keycloak token).
	CacheMaxBytes int64
	// CacheTTL bounds how long a verified token is trusted without being
	// verified again, whatever its exp; it bounds how long a key removed from
	// Keycloak keeps working for tokens already seen.
	CacheTTL time.Duration
	// RealmCacheTTL is how long realm → tenant results (found or not) are
	// cached. Invalidate and InvalidateAll drop them sooner.
	RealmCacheTTL time.Duration
	// RealmCacheSize bounds the realm → tenant cache (entries).
	RealmCacheSize int
	// HTTPClient fetches discovery documents and JWKS. It should have a
	// timeout; the default has DefaultHTTPTimeout. Redirects are never
	// followed, whatever the client's CheckRedirect says.
	HTTPClient *http.Client
	// Now returns the current time; tests inject a fake clock. Default time.Now.
	Now func() time.Time
}

// asymmetricAlgorithms is the set AllowedAlgorithms may draw from, with the
// key family each one needs.
var asymmetricAlgorithms = map[string]keyFamily{
	"RS256": familyRSA, "RS384": familyRSA, "RS512": familyRSA,
	"PS256": familyRSA, "PS384": familyRSA, "PS512": familyRSA,
	"ES256": familyP256, "ES384": familyP384, "ES512": familyP521,
	"EdDSA": familyEd25519,
}

// Validate reports every problem with the configuration. Zero values are
// valid (they mean "use the default").
func (c Config) Validate() error {
	var errs []error
	if len(c.TrustedIssuerBases) == 0 {
		errs = append(errs, errors.New("TrustedIssuerBases: at least one base URL is required"))
	}
	for _, b := range c.TrustedIssuerBases {
		if _, err := normaliseBase(b); err != nil {
			errs = append(errs, fmt.Errorf("TrustedIssuerBases: %w", err))
		}
	}
	if c.PlatformRealm != "" && !validRealmName(c.PlatformRealm) {
		errs = append(errs, fmt.Errorf("PlatformRealm: %q is not a valid realm name", c.PlatformRealm))
	}
	if slices.Contains(c.Audiences, "") {
		errs = append(errs, errors.New("an empty string is not a valid audience (Audiences)"))
	}
	if err := CheckAudienceSetting(len(c.Audiences) > 0, c.AllowAnyAudience, "Audiences", "AllowAnyAudience"); err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(c.Clients, "") {
		errs = append(errs, errors.New("an empty string is not a valid client (Clients)"))
	}
	for _, a := range c.AllowedAlgorithms {
		if _, ok := asymmetricAlgorithms[a]; !ok {
			errs = append(errs, fmt.Errorf("AllowedAlgorithms: %q is not an allowed asymmetric algorithm", a))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ClockSkew", c.ClockSkew},
		{"JWKSRefreshInterval", c.JWKSRefreshInterval},
		{"UnknownKidRefetchInterval", c.UnknownKidRefetchInterval},
		{"UnknownKidTTL", c.UnknownKidTTL},
		{"MaxKeyAge", c.MaxKeyAge},
		{"CacheTTL", c.CacheTTL},
		{"RealmCacheTTL", c.RealmCacheTTL},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", d.name, d.v))
		}
	}
	if c.ClockSkew > 5*time.Minute {
		errs = append(errs, fmt.Errorf("ClockSkew: %s is more than 5m", c.ClockSkew))
	}
	if c.MaxTokenBytes < 0 || c.MaxTokenBytes > maxTokenBytesLimit {
		errs = append(errs, fmt.Errorf("MaxTokenBytes: must be between 0 and %d, got %d", maxTokenBytesLimit, c.MaxTokenBytes))
	}
	if c.CacheMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("CacheMaxBytes: must not be negative, got %d", c.CacheMaxBytes))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("CacheSize: must not be negative, got %d", c.CacheSize))
	}
	if c.RealmCacheSize < 0 {
		errs = append(errs, fmt.Errorf("RealmCacheSize: must not be negative, got %d", c.RealmCacheSize))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with defaults filled in and issuer bases
// normalised. It assumes c.Validate() succeeded.
func (c Config) withDefaults() Config {
	bases := make([]string, 0, len(c.TrustedIssuerBases))
	for _, b := range c.TrustedIssuerBases {
		n, _ := normaliseBase(b)
		if !slices.Contains(bases, n) {
			bases = append(bases, n)
		}
	}
	c.TrustedIssuerBases = bases
	c.Audiences = slices.Clone(c.Audiences)
	c.Clients = slices.Clone(c.Clients)
	if len(c.AllowedAlgorithms) == 0 {
		c.AllowedAlgorithms = DefaultAllowedAlgorithms()
	} else {
		c.AllowedAlgorithms = slices.Clone(c.AllowedAlgorithms)
	}
	setDefault(&c.ClockSkew, DefaultClockSkew)
	setDefault(&c.MaxTokenBytes, DefaultMaxTokenBytes)
	setDefault(&c.JWKSRefreshInterval, DefaultJWKSRefreshInterval)
	setDefault(&c.UnknownKidRefetchInterval, DefaultUnknownKidRefetchInterval)
	setDefault(&c.UnknownKidTTL, DefaultUnknownKidTTL)
	setDefault(&c.MaxKeyAge, DefaultMaxKeyAge)
	setDefault(&c.CacheSize, DefaultCacheSize)
	setDefault(&c.CacheMaxBytes, DefaultCacheMaxBytes)
	setDefault(&c.CacheTTL, DefaultCacheTTL)
	setDefault(&c.RealmCacheTTL, DefaultRealmCacheTTL)
	setDefault(&c.RealmCacheSize, DefaultRealmCacheSize)
	// Copy the client so that disabling redirects does not change the
	// caller's client: a redirect could send our fetch to another host.
	var hc http.Client
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	} else {
		hc.Timeout = DefaultHTTPTimeout
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.HTTPClient = &hc
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// CheckAudienceSetting is the rule on accepted audiences that Validate applies, worded with
// the names the operator sets (flags, environment variables): some audiences, or the explicit
// any-audience switch, and not both.
func CheckAudienceSetting(audiences, anyAudience bool, audiencesName, anyName string) error {
	switch {
	case !audiences && !anyAudience:
		return fmt.Errorf("%s: at least one accepted audience is required (or %s, to accept tokens issued for any service)", audiencesName, anyName)
	case audiences && anyAudience:
		return fmt.Errorf("%s and %s: set one or the other, not both", anyName, audiencesName)
	}
	return nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// normaliseBase checks a trusted issuer base and returns it in the one form
// token issuers are compared against.
func normaliseBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q: %w", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "https" && scheme != "http":
		return "", fmt.Errorf("%q: scheme must be https or http", raw)
	case u.Host == "":
		return "", fmt.Errorf("%q: host is required", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("%q: must not have user info, query or fragment", raw)
	}
	return scheme + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// validRealmName accepts the realm names we are willing to put into a URL:
// no path, query or escape characters, so "<iss>/.well-known/..." always
// stays under the realm.
func validRealmName(r string) bool {
	if r == "" || len(r) > 255 || r == "." || r == ".." {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`/?#%\`, c) >= 0 {
			return false
		}
	}
	return true
}
