// Package devidp is a Keycloak-shaped token issuer for local development only: it serves
// realms' discovery documents and keys like Keycloak and mints access tokens for any subject
// on request. It must never be reachable from anywhere but the developer's machine.
package devidp

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/authn/authntest"
)

// Config says where to listen and which realms to serve.
type Config struct {
	// Addr must be a loopback address: the issuer signs whatever it is asked to.
	Addr string
	// Realms are created at start. Any other realm with a valid name is created when it is
	// first asked about, so a tenant created later (with any realm) gets tokens without a
	// restart.
	Realms   []string
	Audience string
	// KeyDir, when set, keeps each realm's signing key (<realm>.pem, PKCS #8) so that a
	// restarted issuer signs with the same keys and a running pdp keeps trusting them.
	// Empty: keys live in memory only.
	KeyDir string
	// AdminRealm, AdminClientID and AdminSecret enable the Keycloak-shaped admin API (see
	// admin.go): the service account's realm (default master), client id and secret. Without
	// AdminClientID every admin call is refused (401).
	AdminRealm    string
	AdminClientID string
	AdminSecret   string
}

// Server is the running issuer with its admin API.
type Server struct {
	*authntest.Issuer
	admin *admin
}

// realmName is the grammar of realm names the admin API accepts.
var realmName = regexp.MustCompile(`^[a-z0-9_-]{1,100}$`)

const alg = "RS256"

// Start serves the issuer until Close. Tokens come from GET /dev/token?realm=R&sub=S (see
// serveDevToken); realms are also created and managed through the admin API (admin.go).
func Start(cfg Config) (*Server, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, errors.New("the development issuer only listens on a loopback address")
	}
	if cfg.KeyDir != "" {
		if err := os.MkdirAll(cfg.KeyDir, 0o700); err != nil {
			return nil, err
		}
	}
	s := &Server{}
	if s.admin, err = newAdmin(cfg); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	keys := func(realm string) (*authntest.Key, bool, error) {
		if s.admin.deleted(realm) {
			return nil, false, nil
		}
		return cfg.realmKey(realm)
	}
	s.Issuer = authntest.NewIssuer(authntest.WithListener(l), authntest.WithRealmKeys(keys),
		authntest.WithMux(func(mux *http.ServeMux) {
			mux.HandleFunc("GET /dev/token", func(w http.ResponseWriter, r *http.Request) { s.serveDevToken(w, r, cfg.Audience) })
			s.adminRoutes(mux)
		}))
	for _, realm := range cfg.Realms {
		if s.ActiveKey(realm) == nil {
			s.Close()
			return nil, fmt.Errorf("realm %q: not a valid realm name, or its key could not be made", realm)
		}
		s.admin.register(realm)
	}
	return s, nil
}

// serveDevToken mints a token for any subject: GET /dev/token?realm=R&sub=S, or &username=U
// for a user created through the admin API, and &client=C to pick one of the realm's clients.
// A realm created through the admin API gets tokens shaped by its client (azp = the client,
// aud = its audience mappers); any other realm gets azp and aud = audience.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request, audience string) {
	q := r.URL.Query()
	realm, sub, username := q.Get("realm"), q.Get("sub"), q.Get("username")
	if realm == "" || sub == "" && username == "" || strings.ContainsAny(sub, "\x00\n") {
		http.Error(w, "realm and sub (or username) are required", http.StatusBadRequest)
		return
	}
	if s.ActiveKey(realm) == nil {
		http.Error(w, "unknown realm (names are [a-z0-9_-], at most 100)", http.StatusNotFound)
		return
	}
	claims, managed, status, msg := s.admin.tokenClaims(realm, q.Get("client"), username, sub)
	switch {
	case status != 0:
		http.Error(w, msg, status)
		return
	case !managed && username != "":
		http.Error(w, "username names a user created through the admin API; this realm has none", http.StatusNotFound)
		return
	case !managed:
		claims = map[string]any{"sub": sub, "azp": audience, "preferred_username": sub}
		if audience != "" {
			claims["aud"] = audience
		}
	}
	claims["typ"] = "Bearer"
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tok, err := s.Mint(realm, claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int64(time.Until(time.Unix(claims["exp"].(int64), 0)).Seconds())})
}

// realmKey returns realm's signing key: from KeyDir when it holds one, else a new key (saved
// there). Names outside the realm grammar are no realm.
func (c Config) realmKey(realm string) (*authntest.Key, bool, error) {
	if !realmName.MatchString(realm) {
		return nil, false, nil
	}
	if c.KeyDir == "" {
		s, err := authntest.NewSigner(alg)
		if err != nil {
			return nil, false, err
		}
		k, err := authntest.NewKey(alg, s)
		return k, err == nil, err
	}
	path := filepath.Join(c.KeyDir, realm+".pem")
	s, err := loadKey(path)
	if errors.Is(err, os.ErrNotExist) {
		s, err = newSavedKey(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("devidp: realm %s key: %w", realm, err)
	}
	k, err := authntest.NewKey(alg, s)
	return k, err == nil, err
}

func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS #8 private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// newSavedKey makes a key and saves it at path, written whole or not at all (a rename), and
// never over a key another issuer process saved meanwhile (a link, which fails if path exists).
func newSavedKey(path string) (crypto.Signer, error) {
	s, err := authntest.NewSigner(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		return loadKey(path)
	} else if err != nil {
		return nil, err
	}
	return s, nil
}
