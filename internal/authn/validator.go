package authn

import (
	"context"
	"crypto/sha256"
	"hash"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/neofast/neoauthz/internal/cache"
)

// Validator validates Keycloak access tokens. It is safe for concurrent use.
// Call Run in a goroutine to keep realm keys refreshed in the background.
type Validator struct {
	cfg     Config
	bases   []trustedBase
	allowed map[string]keyFamily
	realms  *realmCache
	keys    *keyStore
	tokens  *cache.TTL[[sha256.Size]byte, *cachedToken]
	logger  *slog.Logger
}

type trustedBase struct {
	prefix string // "<base>/realms/"
	url    *url.URL
}

// New returns a Validator. resolver maps non-platform realms to tenants; it
// may be nil when only the platform realm is served. logger receives
// background refresh failures; nil means slog.Default().
func New(cfg Config, resolver RealmResolver, logger *slog.Logger) (*Validator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	if resolver == nil {
		resolver = noTenants{}
	}
	v := &Validator{
		cfg:     cfg,
		allowed: make(map[string]keyFamily, len(cfg.AllowedAlgorithms)),
		realms:  newRealmCache(resolver, cfg),
		keys:    newKeyStore(cfg),
		tokens:  cache.NewTTLSized[[sha256.Size]byte](cfg.CacheSize, cfg.CacheMaxBytes, (*cachedToken).size, cfg.CacheTTL, cfg.Now),
		logger:  logger,
	}
	for _, a := range cfg.AllowedAlgorithms {
		v.allowed[a] = asymmetricAlgorithms[a]
	}
	for _, b := range cfg.TrustedIssuerBases {
		u, err := url.Parse(b)
		if err != nil {
			return nil, err // unreachable: Validate parsed it
		}
		v.bases = append(v.bases, trustedBase{prefix: b + "/realms/", url: u})
	}
	return v, nil
}

type noTenants struct{}

func (noTenants) ResolveRealm(context.Context, string) (TenantRealm, error) {
	return TenantRealm{}, ErrRealmNotFound
}

// Run refreshes the keys of every realm seen so far each
// JWKSRefreshInterval until ctx is done, then returns nil. Failures are
// logged and leave the last good keys in place.
func (v *Validator) Run(ctx context.Context) error {
	t := time.NewTicker(v.cfg.JWKSRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := v.keys.refreshAll(ctx); err != nil && ctx.Err() == nil {
				v.logger.WarnContext(ctx, "authn: refreshing realm keys", slog.String("error", err.Error()))
			}
		}
	}
}

// Invalidate drops the cached realm → tenant answer for realm, so a
// tenant's new status or realm takes effect on its next token (cached
// tokens included: a cache hit re-checks the tenant).
func (v *Validator) Invalidate(realm string) { v.realms.invalidate(realm) }

// InvalidateAll drops every cached realm → tenant answer and every verified token: a
// tenant's audiences may have changed, and a cached token was accepted against the old ones.
// A validation under way when it is called does not cache its answer.
func (v *Validator) InvalidateAll() {
	v.realms.invalidateAll()
	v.tokens.Purge()
}

// Validate verifies token and returns the identity it carries. Errors are
// *Error values classified by Kind; match them with errors.Is against the
// Err* sentinels. Neither errors nor logs ever contain the token.
func (v *Validator) Validate(ctx context.Context, token string) (Identity, error) {
	if len(token) > v.cfg.MaxTokenBytes {
		return Identity{}, ErrTooLarge
	}
	if token == "" {
		return Identity{}, newError(KindMalformed, "empty token")
	}
	now := v.cfg.Now()
	gen := v.realms.gen.Load()
	sum := tokenKey(token)
	if ct, ok := v.tokens.Get(sum); ok {
		if ct.level != LevelTenant || ct.stillChecked(gen, now) {
			return ct.identity(), nil
		}
		fresh, err := v.checkTenant(ctx, ct, now)
		if err != nil {
			v.tokens.Remove(sum)
			return Identity{}, err
		}
		if fresh {
			return ct.identity(), nil
		}
		// The realm now belongs to another tenant: validate from scratch so
		// the answer is the one an uncached token would get.
		v.tokens.Remove(sum)
	}

	pt, err := parseToken(token, v.allowed)
	if err != nil {
		return Identity{}, err
	}
	base, realm, ok := v.matchIssuer(pt.iss)
	if !ok {
		return Identity{}, ErrUnknownIssuer
	}
	level := LevelPlatform
	var tenant TenantRealm
	var answer realmResult
	if realm != v.cfg.PlatformRealm {
		// Resolve before fetching keys: an attacker-chosen realm name must
		// not make us fetch anything from Keycloak.
		level = LevelTenant
		if answer, err = v.realms.lookup(ctx, realm); err != nil {
			return Identity{}, err
		}
		if tenant, err = answer.result(); err != nil {
			return Identity{}, err
		}
	}

	key, err := v.keys.key(ctx, pt.iss, base.url, pt.kid)
	if err != nil {
		return Identity{}, err
	}
	if !keyFits(key, pt.alg, v.allowed[pt.alg]) {
		return Identity{}, newError(KindAlgorithmNotAllowed, "key does not match alg")
	}
	sigAlg, ok := jwa.LookupSignatureAlgorithm(pt.alg)
	if !ok {
		return Identity{}, newError(KindAlgorithmNotAllowed, "")
	}
	// jws.Verify works on the exact bytes parseToken decoded, so the payload
	// read below is the one that was signed.
	if _, err := jws.Verify([]byte(token), jws.WithCompact(), jws.WithKey(sigAlg, key.pub), jws.WithAlgorithmMatch(true)); err != nil {
		return Identity{}, ErrBadSignature
	}

	c, err := readClaims(pt.payload)
	if err != nil {
		return Identity{}, err
	}
	aud := encodeAud(c.aud)
	if err := v.checkClaims(c, aud, now, &tenant); err != nil {
		return Identity{}, err
	}
	if level == LevelTenant && tenant.Status != TenantStatusActive {
		return Identity{}, ErrTenantNotActive
	}
	ct := newCachedToken(level, realm, &tenant, c, aud)

	// Never cache past exp (+ skew, the same bound a fresh validation
	// applies), nor longer than CacheTTL.
	expires := c.exp.Add(v.cfg.ClockSkew)
	if limit := now.Add(v.cfg.CacheTTL); limit.Before(expires) {
		expires = limit
	}
	if v.realms.gen.Load() == gen {
		if level == LevelTenant {
			ct.checked.Store(answer.check(gen)) // the checks above are the tenant check
		}
		v.tokens.Add(sum, ct, expires)
	}
	return ct.identity(), nil
}

// maxSubBytes bounds sub, the user's external id.
const maxSubBytes = 255

// tokenHasher is pooled so that hashing a token on the cache-hit path
// allocates nothing: sha256.Sum256([]byte(token)) copies the token to the
// heap.
type tokenHasher struct {
	h   hash.Hash
	buf [512]byte
	sum [sha256.Size]byte
}

var hasherPool = sync.Pool{New: func() any { return &tokenHasher{h: sha256.New()} }}

// tokenKey is the verified-token cache key: the SHA-256 of the whole token,
// so the cache never holds a token.
func tokenKey(token string) [sha256.Size]byte {
	th := hasherPool.Get().(*tokenHasher)
	th.h.Reset()
	for s := token; s != ""; {
		n := copy(th.buf[:], s)
		th.h.Write(th.buf[:n])
		s = s[n:]
	}
	sum := [sha256.Size]byte(th.h.Sum(th.sum[:0]))
	hasherPool.Put(th)
	return sum
}

// matchIssuer returns the trusted base and realm of iss, which must be
// exactly "<base>/realms/<realm>".
func (v *Validator) matchIssuer(iss string) (trustedBase, string, bool) {
	for _, b := range v.bases {
		if realm, ok := strings.CutPrefix(iss, b.prefix); ok && validRealmName(realm) {
			return b, realm, true
		}
	}
	return trustedBase{}, "", false
}

func (v *Validator) checkClaims(c *claims, aud string, now time.Time, tenant *TenantRealm) error {
	skew := v.cfg.ClockSkew
	if c.typ != "" && c.typ != "Bearer" {
		return newError(KindWrongTokenType, "typ claim is not Bearer")
	}
	if !c.hasExp {
		return newError(KindMissingClaim, "exp")
	}
	if !now.Before(c.exp.Add(skew)) {
		return ErrExpired
	}
	if c.hasNbf && now.Add(skew).Before(c.nbf) {
		return newError(KindNotYetValid, "nbf")
	}
	if c.hasIat && now.Add(skew).Before(c.iat) {
		return newError(KindNotYetValid, "iat")
	}
	if c.sub == "" {
		return newError(KindMissingClaim, "sub")
	}
	if len(c.sub) > maxSubBytes {
		// No user can have it (external ids hold at most 255 characters); refusing it here
		// keeps it out of logs and cache keys.
		return newError(KindMalformed, "sub is too long")
	}
	return v.checkParties(aud, c.azp, tenant)
}

// checkParties applies the two checks on who a token is for: aud must contain an accepted
// audience (aud is the token's list as encodeAud encodes it), and azp must be an accepted client when clients are configured — each list the
// global one plus the tenant's. azp never stands in for aud: a token issued to our client for
// another service's audience is not for us.
func (v *Validator) checkParties(aud, azp string, tenant *TenantRealm) error {
	if len(v.cfg.Audiences) > 0 || len(tenant.Audiences) > 0 {
		if !audContainsAny(aud, v.cfg.Audiences) && !audContainsAny(aud, tenant.Audiences) {
			return ErrWrongAudience
		}
	}
	if len(v.cfg.Clients) > 0 || len(tenant.Clients) > 0 {
		if azp == "" || !slices.Contains(v.cfg.Clients, azp) && !slices.Contains(tenant.Clients, azp) {
			return ErrWrongClient
		}
	}
	return nil
}

// checkTenant re-checks, on a cache hit, that the identity's tenant still owns its realm, is
// active and accepts the token's audience and client, so Invalidate also reaches cached tokens.
// It returns false when the realm now maps to another tenant. A passed check is recorded in ct,
// so that later hits skip it until the next invalidation or the realm answer's expiry.
func (v *Validator) checkTenant(ctx context.Context, ct *cachedToken, now time.Time) (bool, error) {
	p := ct.parties.Value()
	gen := v.realms.gen.Load() // before the lookup: an invalidation during it makes the record stale
	r, err := v.realms.lookup(ctx, p.realm)
	if err != nil {
		return false, err
	}
	tr, err := r.result()
	if err != nil {
		return false, err
	}
	if tr.TenantID != p.tenantID {
		return false, nil
	}
	if tr.Status != TenantStatusActive {
		return false, ErrTenantNotActive
	}
	if err := v.checkParties(p.aud, p.azp, &tr); err != nil {
		return false, err
	}
	if now.Before(r.expires) {
		ct.checked.Store(r.check(gen))
	}
	return true, nil
}

// keyFits checks that the published key can be used with alg: the right
// family (and curve), and the JWK's own alg, when it sets one, equal to alg.
func keyFits(k *verifyKey, alg string, want keyFamily) bool {
	return k.family == want && (k.alg == "" || k.alg == alg)
}
