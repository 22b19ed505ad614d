package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
)

const (
	// maxDocumentBytes bounds discovery and JWKS responses.
	maxDocumentBytes = 1 << 20
	// maxUnknownKids bounds the per-realm memory of unknown kids; when it is
	// full the refetch interval alone still protects Keycloak.
	maxUnknownKids = 4096
	// minRSABits refuses published RSA keys too weak to trust.
	minRSABits = 2048
	// refreshParallelism bounds concurrent fetches in a background refresh.
	refreshParallelism = 8
)

type keyFamily uint8

const (
	familyRSA keyFamily = iota + 1
	familyP256
	familyP384
	familyP521
	familyEd25519
)

// verifyKey is a published signing key, exported from its JWK once at fetch
// time so that verification touches no JWK machinery.
type verifyKey struct {
	family keyFamily
	alg    string // the JWK's own alg; empty when the JWK does not set one
	pub    any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is an immutable snapshot of one realm's usable signing keys.
type keySet struct {
	keys      map[string]*verifyKey
	fetchedAt time.Time
	gen       uint64
}

// realmKeys holds the keys of one issuer (one realm on one trusted base).
type realmKeys struct {
	issuer string
	base   *url.URL
	// current is the last good key set, swapped atomically so the hot path
	// takes no lock.
	current atomic.Pointer[keySet]

	mu          sync.Mutex
	jwksURI     string
	lastAttempt time.Time
	unknown     map[string]time.Time // kid → remembered until
}

// keyStore fetches and caches the keys of every realm seen so far.
type keyStore struct {
	cfg Config
	sf  singleflight.Group

	mu     sync.Mutex
	realms map[string]*realmKeys // by issuer
}

func newKeyStore(cfg Config) *keyStore {
	return &keyStore{cfg: cfg, realms: map[string]*realmKeys{}}
}

// realm returns the key holder for issuer, creating it on first use. Only
// issuers whose realm resolved to a tenant or the platform reach this, so
// the map is bounded by the number of realms we serve.
func (s *keyStore) realm(issuer string, base *url.URL) *realmKeys {
	s.mu.Lock()
	defer s.mu.Unlock()
	rk, ok := s.realms[issuer]
	if !ok {
		rk = &realmKeys{issuer: issuer, base: base, unknown: map[string]time.Time{}}
		s.realms[issuer] = rk
	}
	return rk
}

// key returns the verification key kid of the issuer's realm, fetching keys
// when there are none fresh enough or kid is new, within the rate limits.
func (s *keyStore) key(ctx context.Context, issuer string, base *url.URL, kid string) (*verifyKey, error) {
	rk := s.realm(issuer, base)
	now := s.cfg.Now()
	ks := rk.current.Load()
	if !s.usable(ks, now) {
		err := s.fetch(ctx, rk, false)
		ks = rk.current.Load()
		if !s.usable(ks, now) {
			// err is nil when the fetch was skipped by the rate limit.
			return nil, wrapError(KindUnavailable, "no current keys for realm", err)
		}
	}
	if k, ok := ks.keys[kid]; ok {
		return k, nil
	}
	if rk.rememberedUnknown(kid, now) {
		return nil, ErrUnknownKey
	}
	if err := s.fetch(ctx, rk, false); err != nil && ctx.Err() != nil {
		return nil, wrapError(KindUnavailable, "fetching keys", ctx.Err())
	}
	fresh := rk.current.Load()
	if k, ok := fresh.keys[kid]; ok && s.usable(fresh, now) {
		return k, nil
	}
	// Remember the kid only if it was checked against a set fetched during
	// this call; a kid refused merely because of the rate limit may be a
	// legitimately rotated key and must get its refetch once allowed.
	if fresh.gen > ks.gen {
		rk.rememberUnknown(kid, now, s.cfg.UnknownKidTTL)
	}
	return nil, ErrUnknownKey
}

func (s *keyStore) usable(ks *keySet, now time.Time) bool {
	return ks != nil && now.Sub(ks.fetchedAt) < s.cfg.MaxKeyAge
}

func (rk *realmKeys) rememberedUnknown(kid string, now time.Time) bool {
	rk.mu.Lock()
	defer rk.mu.Unlock()
	until, ok := rk.unknown[kid]
	return ok && now.Before(until)
}

func (rk *realmKeys) rememberUnknown(kid string, now time.Time, ttl time.Duration) {
	rk.mu.Lock()
	defer rk.mu.Unlock()
	if len(rk.unknown) >= maxUnknownKids {
		for k, u := range rk.unknown {
			if !now.Before(u) {
				delete(rk.unknown, k)
			}
		}
		if len(rk.unknown) >= maxUnknownKids {
			return
		}
	}
	rk.unknown[kid] = now.Add(ttl)
}

// fetch refreshes rk's keys. Concurrent calls for one realm share a single
// fetch (singleflight); unless force is set, a fetch is skipped when the
// previous attempt is more recent than UnknownKidRefetchInterval. The rate
// check runs inside the shared call, so no two callers can both decide to
// fetch.
func (s *keyStore) fetch(ctx context.Context, rk *realmKeys, force bool) error {
	ch := s.sf.DoChan(rk.issuer, func() (any, error) {
		now := s.cfg.Now()
		rk.mu.Lock()
		if !force && !rk.lastAttempt.IsZero() && now.Sub(rk.lastAttempt) < s.cfg.UnknownKidRefetchInterval {
			rk.mu.Unlock()
			return nil, nil
		}
		rk.lastAttempt = now
		rk.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.fetchTimeout())
		defer cancel()
		return nil, s.load(fctx, rk)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *keyStore) fetchTimeout() time.Duration {
	if t := s.cfg.HTTPClient.Timeout; t > 0 {
		return t
	}
	return DefaultHTTPTimeout
}

// load fetches discovery (once) and the JWKS, and installs the usable keys.
// On any failure the last good set stays in place.
func (s *keyStore) load(ctx context.Context, rk *realmKeys) error {
	rk.mu.Lock()
	uri := rk.jwksURI
	rk.mu.Unlock()
	if uri == "" {
		var err error
		if uri, err = s.discover(ctx, rk); err != nil {
			return err
		}
	}
	body, err := s.get(ctx, uri)
	if err == nil {
		var keys map[string]*verifyKey
		if keys, err = parseJWKS(body); err == nil {
			old := rk.current.Load()
			ks := &keySet{keys: keys, fetchedAt: s.cfg.Now(), gen: 1}
			if old != nil {
				ks.gen = old.gen + 1
			}
			rk.current.Store(ks)
			rk.mu.Lock()
			rk.jwksURI = uri
			rk.mu.Unlock()
			return nil
		}
	}
	// Forget the jwks_uri so the next attempt rediscovers it, in case the
	// realm's configuration moved.
	rk.mu.Lock()
	rk.jwksURI = ""
	rk.mu.Unlock()
	return err
}

// discover reads the realm's OpenID configuration and returns its jwks_uri,
// which must be on the trusted base's scheme and host: the document is
// fetched over the network and must not be able to point us elsewhere.
func (s *keyStore) discover(ctx context.Context, rk *realmKeys) (string, error) {
	body, err := s.get(ctx, rk.issuer+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery document: %w", err)
	}
	if doc.Issuer != rk.issuer {
		return "", errors.New("discovery document: issuer does not match")
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil {
		return "", fmt.Errorf("discovery document: jwks_uri: %w", err)
	}
	if !strings.EqualFold(u.Scheme, rk.base.Scheme) || !strings.EqualFold(u.Host, rk.base.Host) || u.User != nil {
		return "", fmt.Errorf("discovery document: jwks_uri %q is not on %s://%s", doc.JWKSURI, rk.base.Scheme, rk.base.Host)
	}
	return u.String(), nil
}

func (s *keyStore) get(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentBytes))
		return nil, fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", uri, maxDocumentBytes)
	}
	return body, nil
}

// parseJWKS keeps the keys that can verify signatures: use "sig" or unset,
// a supported key type, RSA of at least minRSABits, a kid. Encryption keys,
// which Keycloak publishes beside signing keys, are dropped.
func parseJWKS(body []byte) (map[string]*verifyKey, error) {
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := make(map[string]*verifyKey, set.Len())
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, ok := k.KeyID()
		if !ok || kid == "" {
			continue
		}
		if use, ok := k.KeyUsage(); ok && use != "sig" {
			continue
		}
		pk, err := k.PublicKey()
		if err != nil {
			continue
		}
		var raw any
		if err := jwk.Export(pk, &raw); err != nil {
			continue
		}
		vk := &verifyKey{pub: raw}
		if alg, ok := k.Algorithm(); ok {
			vk.alg = alg.String()
		}
		switch p := raw.(type) {
		case *rsa.PublicKey:
			if p.N.BitLen() < minRSABits {
				continue
			}
			vk.family = familyRSA
		case *ecdsa.PublicKey:
			switch p.Curve {
			case elliptic.P256():
				vk.family = familyP256
			case elliptic.P384():
				vk.family = familyP384
			case elliptic.P521():
				vk.family = familyP521
			default:
				continue
			}
		case ed25519.PublicKey:
			vk.family = familyEd25519
		default:
			continue
		}
		// Two keys with one kid would make the choice ambiguous; refuse both.
		if _, dup := keys[kid]; dup {
			keys[kid] = nil
			continue
		}
		keys[kid] = vk
	}
	for kid, k := range keys {
		if k == nil {
			delete(keys, kid)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS: no usable signing keys")
	}
	return keys, nil
}

// refreshAll refreshes every known realm, bounded in parallelism. Failures
// leave the last good keys in place; they are returned joined for logging.
func (s *keyStore) refreshAll(ctx context.Context) error {
	s.mu.Lock()
	realms := make([]*realmKeys, 0, len(s.realms))
	for _, rk := range s.realms {
		realms = append(realms, rk)
	}
	s.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(refreshParallelism)
	var mu sync.Mutex
	var errs []error
	for _, rk := range realms {
		g.Go(func() error {
			if err := s.fetch(ctx, rk, true); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", rk.issuer, err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}
