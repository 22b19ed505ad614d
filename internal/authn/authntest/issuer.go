// Package authntest provides a Keycloak-shaped identity provider for tests and local development: per-realm discovery and JWKS endpoints over HTTP, key rotation, failure injection and token minting.
package authntest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTokenLifetime is the exp - iat of tokens minted without an exp.
const DefaultTokenLifetime = 5 * time.Minute

// Issuer serves, for every realm added to it, Keycloak's
// /realms/<realm>/.well-known/openid-configuration and
// /realms/<realm>/protocol/openid-connect/certs, and mints tokens signed
// by the realm's active key. Its methods are safe for concurrent use.
type Issuer struct {
	srv      *httptest.Server
	listener net.Listener
	extra    func(*http.ServeMux)
	now      func() time.Time
	requests atomic.Int64
	failing  atomic.Bool

	// realmKey, when set, provides the signing key of a realm met for the first time
	// (WithRealmKeys).
	realmKey func(realm string) (*Key, bool, error)

	mu     sync.Mutex
	realms map[string]*realm
}

type realm struct {
	keys        []*Key // published, in order
	active      *Key
	jwksFetches int
	jwksURI     string // overrides the advertised jwks_uri when set
}

// Key is a signing key of a realm.
type Key struct {
	// ID is the kid: the RFC 7638 thumbprint of the public key, so two keys never share one,
	// whichever issuer process made them.
	ID string
	// Alg is the JWS algorithm the key signs with and advertises.
	Alg string
	// Signer is the private key.
	Signer crypto.Signer
}

// Option configures NewIssuer.
type Option func(*Issuer)

// WithClock sets the clock used for iat and default exp of minted tokens.
func WithClock(now func() time.Time) Option { return func(i *Issuer) { i.now = now } }

// WithListener serves the issuer on l instead of a fresh loopback port (the development
// issuer of `make run` uses a fixed address).
func WithListener(l net.Listener) Option { return func(i *Issuer) { i.listener = l } }

// WithMux lets the caller add routes (such as a development token endpoint) beside the
// realm endpoints.
func WithMux(add func(*http.ServeMux)) Option { return func(i *Issuer) { i.extra = add } }

// WithRealmKeys makes the issuer serve realms it was not given with AddRealm: the first
// request about a realm (discovery, JWKS, Mint) calls key, which returns the realm's signing
// key, or ok = false for a realm that does not exist. The development issuer uses it to serve
// any realm a tenant names, with keys kept on disk.
func WithRealmKeys(key func(realm string) (k *Key, ok bool, err error)) Option {
	return func(i *Issuer) { i.realmKey = key }
}

// NewIssuer starts an issuer on a local HTTP listener. Close it when done.
func NewIssuer(opts ...Option) *Issuer {
	i := &Issuer{now: time.Now, realms: map[string]*realm{}}
	for _, o := range opts {
		o(i)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/{realm}/.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /realms/{realm}/protocol/openid-connect/certs", i.serveCerts)
	if i.extra != nil {
		i.extra(mux)
	}
	i.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.requests.Add(1)
		if i.failing.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	if i.listener != nil {
		_ = i.srv.Listener.Close()
		i.srv.Listener = i.listener
	}
	i.srv.Start()
	return i
}

// Close shuts the server down.
func (i *Issuer) Close() { i.srv.Close() }

// URL returns the base URL, to be used as a trusted issuer base.
func (i *Issuer) URL() string { return i.srv.URL }

// Client returns an HTTP client for the server.
func (i *Issuer) Client() *http.Client { return i.srv.Client() }

// IssuerURL returns the iss of realm's tokens.
func (i *Issuer) IssuerURL(realm string) string { return i.srv.URL + "/realms/" + realm }

// AddRealm creates realm with an active signing key for alg (RS256, PS256,
// ES256, EdDSA, ...) and returns its kid. Like Keycloak, it also publishes
// an RSA encryption key (use "enc") that must never verify a signature.
func (i *Issuer) AddRealm(realmName, alg string) (string, error) {
	k, err := newKey(alg)
	if err != nil {
		return "", err
	}
	r, err := newRealm(k)
	if err != nil {
		return "", err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.realms[realmName] = r
	return k.ID, nil
}

// newRealm returns a realm signing with k that also publishes an encryption key.
func newRealm(k *Key) (*realm, error) {
	enc, err := newKey("RSA-OAEP")
	if err != nil {
		return nil, err
	}
	return &realm{keys: []*Key{k, enc}, active: k}, nil
}

// realm returns the realm named name, creating it with WithRealmKeys' key when the issuer
// has one; nil when there is no such realm. The caller holds i.mu, which realm releases while
// a key is made.
func (i *Issuer) realm(name string) *realm {
	if r, ok := i.realms[name]; ok || i.realmKey == nil {
		return r
	}
	i.mu.Unlock()
	var r *realm
	k, ok, err := i.realmKey(name)
	if err == nil && ok {
		r, err = newRealm(k)
	}
	i.mu.Lock()
	if err != nil || r == nil {
		return nil
	}
	if old, ok := i.realms[name]; ok { // made meanwhile by another request
		return old
	}
	i.realms[name] = r
	return r
}

// RemoveRealm forgets realm: its endpoints answer 404 until it is added again (with
// WithRealmKeys, until the key function serves it again).
func (i *Issuer) RemoveRealm(realmName string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.realms, realmName)
}

// Rotate adds a new key for alg to realm and makes it the active one; the
// old keys stay published until RemoveKey.
func (i *Issuer) Rotate(realmName, alg string) (string, error) {
	k, err := newKey(alg)
	if err != nil {
		return "", err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	r := i.realm(realmName)
	if r == nil {
		return "", fmt.Errorf("authntest: no realm %q", realmName)
	}
	r.keys = append(r.keys, k)
	r.active = k
	return k.ID, nil
}

// RemoveKey unpublishes kid from realm.
func (i *Issuer) RemoveKey(realmName, kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.realms[realmName]; ok {
		for n, k := range r.keys {
			if k.ID == kid {
				r.keys = append(r.keys[:n:n], r.keys[n+1:]...)
				break
			}
		}
	}
}

// Key returns realm's key kid (published or not), or nil.
func (i *Issuer) Key(realmName, kid string) *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.realms[realmName]; ok {
		for _, k := range r.keys {
			if k.ID == kid {
				return k
			}
		}
		if r.active != nil && r.active.ID == kid {
			return r.active
		}
	}
	return nil
}

// ActiveKey returns realm's active signing key, or nil.
func (i *Issuer) ActiveKey(realmName string) *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r := i.realm(realmName); r != nil {
		return r.active
	}
	return nil
}

// Keys returns realm's published keys, the encryption key included.
func (i *Issuer) Keys(realmName string) []*Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.realms[realmName]; ok {
		return append([]*Key(nil), r.keys...)
	}
	return nil
}

// SetFailing makes every endpoint answer 503 (true) or work again (false).
func (i *Issuer) SetFailing(fail bool) { i.failing.Store(fail) }

// SetJWKSURI makes realm's discovery document advertise uri as jwks_uri.
func (i *Issuer) SetJWKSURI(realmName, uri string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.realms[realmName]; ok {
		r.jwksURI = uri
	}
}

// JWKSFetches returns how many times realm's JWKS was served.
func (i *Issuer) JWKSFetches(realmName string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if r, ok := i.realms[realmName]; ok {
		return r.jwksFetches
	}
	return 0
}

// Requests returns how many HTTP requests the server has received.
func (i *Issuer) Requests() int64 { return i.requests.Load() }

// Mint returns an access token of realm signed by its active key. Claims
// default to iss (the realm's issuer), sub "test-user", azp "test-client",
// typ "Bearer", iat now and exp now+DefaultTokenLifetime; claims overrides
// them, and a nil value removes a claim.
func (i *Issuer) Mint(realmName string, claims map[string]any) (string, error) {
	return i.MintWithHeader(realmName, claims, nil)
}

// MintWithHeader is Mint with extra protected header members: they override
// alg, typ and kid (the token is still signed by the active key, so a kid
// override makes an unknown-kid token), and a nil value removes a member.
func (i *Issuer) MintWithHeader(realmName string, claims, header map[string]any) (string, error) {
	k := i.ActiveKey(realmName)
	if k == nil {
		return "", fmt.Errorf("authntest: no realm %q", realmName)
	}
	now := i.now()
	c := map[string]any{
		"iss": i.IssuerURL(realmName),
		"sub": "test-user",
		"azp": "test-client",
		"typ": "Bearer",
		"iat": now.Unix(),
		"exp": now.Add(DefaultTokenLifetime).Unix(),
	}
	merge(c, claims)
	h := map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.ID}
	merge(h, header)
	return Sign(h, c, k.Signer)
}

func merge(dst, src map[string]any) {
	for name, v := range src {
		if v == nil {
			delete(dst, name)
		} else {
			dst[name] = v
		}
	}
}

// Sign builds a compact JWS of claims with header, signed by signer with
// the algorithm named by header["alg"]. It signs with the standard library
// only, so tests of a validator built on jwx do not check jwx against itself.
func Sign(header, claims map[string]any, signer crypto.Signer) (string, error) {
	hj, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return SignJSON(hj, cj, signer)
}

// SignJSON builds a compact JWS of the exact header and claims texts given, so that tests can
// sign what json.Marshal never writes (a member twice, escapes). It signs with the algorithm
// of the header's last "alg" member.
func SignJSON(header, claims []byte, signer crypto.Signer) (string, error) {
	var alg string
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil {
		return "", err
	}
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return "", err
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return "", err
		}
		if name == "alg" {
			if err := json.Unmarshal(value, &alg); err != nil {
				return "", err
			}
		}
	}
	input := b64(header) + "." + b64(claims)
	sig, err := signBytes(alg, signer, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func hashFor(alg string) (crypto.Hash, error) {
	switch alg[len(alg)-3:] {
	case "256":
		return crypto.SHA256, nil
	case "384":
		return crypto.SHA384, nil
	case "512":
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("authntest: no hash for %q", alg)
}

func signBytes(alg string, signer crypto.Signer, input []byte) ([]byte, error) {
	if alg == "EdDSA" {
		k, ok := signer.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("authntest: EdDSA needs an ed25519 key")
		}
		return ed25519.Sign(k, input), nil
	}
	if len(alg) != 5 {
		return nil, fmt.Errorf("authntest: cannot sign with %q", alg)
	}
	h, err := hashFor(alg)
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(input)
	digest := hh.Sum(nil)
	switch alg[:2] {
	case "RS", "PS":
		k, ok := signer.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("authntest: %s needs an RSA key", alg)
		}
		if alg[0] == 'R' {
			return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		}
		return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k, ok := signer.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("authntest: %s needs an EC key", alg)
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
	return nil, fmt.Errorf("authntest: cannot sign with %q", alg)
}

// NewSigner generates a private key suitable for alg.
func NewSigner(alg string) (crypto.Signer, error) {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "RSA-OAEP":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("authntest: unsupported alg %q", alg)
}

func newKey(alg string) (*Key, error) {
	s, err := NewSigner(alg)
	if err != nil {
		return nil, err
	}
	return NewKey(alg, s)
}

// NewKey returns the key of signer for alg, identified by its RFC 7638 thumbprint.
func NewKey(alg string, signer crypto.Signer) (*Key, error) {
	kid, err := Thumbprint(signer.Public())
	if err != nil {
		return nil, err
	}
	return &Key{ID: kid, Alg: alg, Signer: signer}, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub: the base64url SHA-256 of the JSON
// object of the key's required members, in lexicographic order, without white space.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	m := publicJWK(pub)
	if m == nil {
		return "", fmt.Errorf("authntest: no thumbprint for %T", pub)
	}
	// encoding/json writes map members sorted by name and without white space, as RFC 7638
	// requires; the values are base64url strings and names, which it does not escape.
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return b64(sum[:]), nil
}

// publicJWK returns the required members of pub's JWK (RFC 7638 §3.2), or nil.
func publicJWK(pub crypto.PublicKey) map[string]string {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	case *ecdsa.PublicKey:
		pt, err := pub.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil
		}
		size := (len(pt) - 1) / 2
		return map[string]string{"kty": "EC", "crv": pub.Curve.Params().Name, "x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}
	}
	return nil
}

// JWK returns k's public key as a JWK, shaped as Keycloak publishes it.
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.ID, "alg": k.Alg, "use": "sig"}
	if k.Alg == "RSA-OAEP" {
		m["use"] = "enc"
	}
	for name, v := range publicJWK(k.Signer.Public()) {
		m[name] = v
	}
	return m
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("realm")
	i.mu.Lock()
	rl := i.realm(name)
	var jwksURI string
	if rl != nil {
		jwksURI = rl.jwksURI
	}
	i.mu.Unlock()
	if rl == nil {
		http.NotFound(w, r)
		return
	}
	iss := i.IssuerURL(name)
	if jwksURI == "" {
		jwksURI = iss + "/protocol/openid-connect/certs"
	}
	writeJSON(w, map[string]any{
		"issuer":                 iss,
		"jwks_uri":               jwksURI,
		"authorization_endpoint": iss + "/protocol/openid-connect/auth",
		"token_endpoint":         iss + "/protocol/openid-connect/token",
	})
}

func (i *Issuer) serveCerts(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	rl := i.realm(r.PathValue("realm"))
	var keys []map[string]any
	if rl != nil {
		rl.jwksFetches++
		for _, k := range rl.keys {
			keys = append(keys, k.JWK())
		}
	}
	i.mu.Unlock()
	if rl == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, map[string]any{"keys": keys})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
