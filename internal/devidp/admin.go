package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neofast/neoauthz/internal/keycloak"
)

// The subset of Keycloak's Admin REST API that realm provisioning uses, with the shapes and
// status codes of internal/keycloak/representations.go: 201 with Location on create, 409 on a
// duplicate, 401 without a valid service token, 404 on an unknown realm or client, 400 on a
// body that does not parse (unknown fields included, so that the client's shapes are checked).
// Service tokens come from the admin realm's token endpoint (client credentials).

// serviceTokenLifetime is the expires_in of service tokens.
const serviceTokenLifetime = 5 * time.Minute

// admin is the state of realms created through the admin API.
type admin struct {
	realm, clientID, secret string
	path                    string // where the state is kept across restarts ("" in memory)
	failing                 atomic.Bool

	mu     sync.Mutex
	tokens map[[32]byte]time.Time // service tokens (by hash) and their expiry
	state  adminState
}

type adminState struct {
	Realms map[string]*managedRealm `json:"realms"`
	// Deleted realms are served no more (not even on demand) until created again.
	Deleted map[string]bool `json:"deleted"`
}

type managedRealm struct {
	Rep     keycloak.RealmRepresentation     `json:"realm"`
	Clients []*keycloak.ClientRepresentation `json:"clients"`
	Users   []keycloak.UserRepresentation    `json:"users"`
}

func (r *managedRealm) enabled() bool { return r.Rep.Enabled == nil || *r.Rep.Enabled }

func (r *managedRealm) client(id string) *keycloak.ClientRepresentation {
	for _, c := range r.Clients {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// audiences are what a client's audience mappers put in access tokens' aud.
func audiences(c *keycloak.ClientRepresentation) []string {
	var out []string
	for _, m := range c.ProtocolMappers {
		if m.ProtocolMapper == keycloak.MapperAudience && m.Config[keycloak.ConfigAccessToken] == "true" && m.Config[keycloak.ConfigCustomAudience] != "" {
			out = append(out, m.Config[keycloak.ConfigCustomAudience])
		}
	}
	return out
}

func newAdmin(cfg Config) (*admin, error) {
	a := &admin{realm: cfg.AdminRealm, clientID: cfg.AdminClientID, secret: cfg.AdminSecret,
		tokens: map[[32]byte]time.Time{}, state: adminState{Realms: map[string]*managedRealm{}, Deleted: map[string]bool{}}}
	if a.realm == "" {
		a.realm = keycloak.DefaultAdminRealm
	}
	if cfg.KeyDir != "" {
		a.path = filepath.Join(cfg.KeyDir, "admin-realms.json")
		b, err := os.ReadFile(a.path)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &a.state); err != nil {
				return nil, fmt.Errorf("devidp: %s: %w", a.path, err)
			}
		case !os.IsNotExist(err):
			return nil, err
		}
		if a.state.Realms == nil {
			a.state.Realms = map[string]*managedRealm{}
		}
		if a.state.Deleted == nil {
			a.state.Deleted = map[string]bool{}
		}
	}
	return a, nil
}

// save writes the state (caller holds a.mu), whole or not at all.
func (a *admin) save() error {
	if a.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(a.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.path)
}

func (a *admin) deleted(realm string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.Deleted[realm]
}

// register records a realm created at start (it exists for the admin API, without clients).
func (a *admin) register(realm string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.state.Realms[realm]; !ok && !a.state.Deleted[realm] {
		a.state.Realms[realm] = &managedRealm{Rep: keycloak.RealmRepresentation{ID: realm, Realm: realm, Enabled: ptr(true)}}
	}
}

func ptr[T any](v T) *T { return &v }

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(keycloak.ErrorRepresentation{ErrorMessage: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "unable to read the representation: "+err.Error())
		return false
	}
	return true
}

// serveToken is the token endpoint: the client credentials grant of the service account.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	a := s.admin
	if a.failing.Load() {
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	tokErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(keycloak.TokenError{Error: code, Description: desc})
	}
	if err := r.ParseForm(); err != nil {
		tokErr(http.StatusBadRequest, "invalid_request", "the form does not parse")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		tokErr(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is served")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if a.clientID == "" || r.PathValue("realm") != a.realm || id != a.clientID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(a.secret)) != 1 {
		tokErr(http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	exp := time.Now().Add(serviceTokenLifetime)
	tok, err := s.Mint(a.realm, map[string]any{"sub": "service-account-" + id, "azp": id, "typ": "Bearer", "exp": exp.Unix()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	now := time.Now()
	for h, e := range a.tokens {
		if now.After(e) {
			delete(a.tokens, h)
		}
	}
	a.tokens[sha256.Sum256([]byte(tok))] = exp
	a.mu.Unlock()
	writeJSON(w, keycloak.TokenResponse{AccessToken: tok, ExpiresIn: int(serviceTokenLifetime / time.Second), TokenType: "Bearer"})
}

// guard serves h only for a request bearing a valid service token.
func (s *Server) guard(h func(http.ResponseWriter, *http.Request, *admin)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.admin
		if a.failing.Load() {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		exp, known := a.tokens[sha256.Sum256([]byte(tok))]
		a.mu.Unlock()
		if !ok || !known || time.Now().After(exp) {
			writeError(w, http.StatusUnauthorized, "HTTP 401 Unauthorized")
			return
		}
		h(w, r, a)
	}
}

// realmOf returns the managed realm the path names (caller holds a.mu), or answers 404.
func realmOf(w http.ResponseWriter, r *http.Request, a *admin) *managedRealm {
	m := a.state.Realms[r.PathValue("realm")]
	if m == nil {
		writeError(w, http.StatusNotFound, "Realm not found.")
	}
	return m
}

// created answers 201 with the Location of what was made, after saving the state.
func (s *Server) created(w http.ResponseWriter, a *admin, location string) {
	if err := a.save(); err != nil {
		writeError(w, http.StatusInternalServerError, "state not saved: "+err.Error())
		return
	}
	w.Header().Set("Location", s.URL()+location)
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /realms/{realm}/protocol/openid-connect/token", s.serveToken)
	mux.HandleFunc("POST /admin/realms", s.guard(s.createRealm))
	mux.HandleFunc("GET /admin/realms/{realm}", s.guard(func(w http.ResponseWriter, r *http.Request, a *admin) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if m := realmOf(w, r, a); m != nil {
			writeJSON(w, m.Rep)
		}
	}))
	mux.HandleFunc("PUT /admin/realms/{realm}", s.guard(s.updateRealm))
	mux.HandleFunc("DELETE /admin/realms/{realm}", s.guard(s.deleteRealm))
	mux.HandleFunc("GET /admin/realms/{realm}/clients", s.guard(func(w http.ResponseWriter, r *http.Request, a *admin) {
		a.mu.Lock()
		defer a.mu.Unlock()
		m := realmOf(w, r, a)
		if m == nil {
			return
		}
		list := []*keycloak.ClientRepresentation{}
		for _, c := range m.Clients {
			if q := r.URL.Query().Get("clientId"); q == "" || q == c.ClientID {
				list = append(list, c)
			}
		}
		writeJSON(w, list)
	}))
	mux.HandleFunc("POST /admin/realms/{realm}/clients", s.guard(s.createClient))
	mux.HandleFunc("GET /admin/realms/{realm}/clients/{id}/protocol-mappers/models", s.guard(func(w http.ResponseWriter, r *http.Request, a *admin) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if c := clientOf(w, r, a); c != nil {
			writeJSON(w, append([]keycloak.ProtocolMapperRepresentation{}, c.ProtocolMappers...))
		}
	}))
	mux.HandleFunc("POST /admin/realms/{realm}/clients/{id}/protocol-mappers/models", s.guard(s.createMapper))
	mux.HandleFunc("GET /admin/realms/{realm}/users", s.guard(func(w http.ResponseWriter, r *http.Request, a *admin) {
		a.mu.Lock()
		defer a.mu.Unlock()
		m := realmOf(w, r, a)
		if m == nil {
			return
		}
		q, exact := r.URL.Query().Get("username"), r.URL.Query().Get("exact") == "true"
		list := []keycloak.UserRepresentation{}
		for _, u := range m.Users {
			if q == "" || u.Username == strings.ToLower(q) || !exact && strings.Contains(u.Username, strings.ToLower(q)) {
				list = append(list, u)
			}
		}
		writeJSON(w, list)
	}))
	mux.HandleFunc("POST /admin/realms/{realm}/users", s.guard(s.createUser))
}

func (s *Server) createRealm(w http.ResponseWriter, r *http.Request, a *admin) {
	var rep keycloak.RealmRepresentation
	if !decode(w, r, &rep) {
		return
	}
	if !keycloak.ValidRealmName(rep.Realm) {
		writeError(w, http.StatusBadRequest, "invalid realm name")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.state.Realms[rep.Realm]; ok {
		writeError(w, http.StatusConflict, "Realm "+rep.Realm+" already exists")
		return
	}
	if rep.Enabled == nil {
		rep.Enabled = ptr(false) // Keycloak's default for a realm created without "enabled"
	}
	rep.ID = newID()
	a.state.Realms[rep.Realm] = &managedRealm{Rep: rep}
	delete(a.state.Deleted, rep.Realm)
	s.created(w, a, "/admin/realms/"+rep.Realm)
}

func (s *Server) updateRealm(w http.ResponseWriter, r *http.Request, a *admin) {
	var rep keycloak.RealmRepresentation
	if !decode(w, r, &rep) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m := realmOf(w, r, a)
	if m == nil {
		return
	}
	if rep.Realm != "" && rep.Realm != m.Rep.Realm {
		writeError(w, http.StatusBadRequest, "renaming a realm is not served here")
		return
	}
	// Like Keycloak, fields absent from the representation are left unchanged.
	if rep.Enabled != nil {
		m.Rep.Enabled = rep.Enabled
	}
	if rep.DisplayName != "" {
		m.Rep.DisplayName = rep.DisplayName
	}
	if rep.AccessTokenLifespan != 0 {
		m.Rep.AccessTokenLifespan = rep.AccessTokenLifespan
	}
	for k, v := range rep.Attributes {
		if m.Rep.Attributes == nil {
			m.Rep.Attributes = map[string]string{}
		}
		m.Rep.Attributes[k] = v
	}
	if err := a.save(); err != nil {
		writeError(w, http.StatusInternalServerError, "state not saved: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteRealm(w http.ResponseWriter, r *http.Request, a *admin) {
	a.mu.Lock()
	m := realmOf(w, r, a)
	if m == nil {
		a.mu.Unlock()
		return
	}
	name := m.Rep.Realm
	delete(a.state.Realms, name)
	a.state.Deleted[name] = true
	err := a.save()
	a.mu.Unlock()
	// Its keys are no longer served: tokens of a deleted realm stop validating.
	s.RemoveRealm(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "state not saved: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request, a *admin) {
	var rep keycloak.ClientRepresentation
	if !decode(w, r, &rep) {
		return
	}
	if rep.ClientID == "" {
		writeError(w, http.StatusBadRequest, "clientId is required")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m := realmOf(w, r, a)
	if m == nil {
		return
	}
	if slices.ContainsFunc(m.Clients, func(c *keycloak.ClientRepresentation) bool { return c.ClientID == rep.ClientID }) {
		writeError(w, http.StatusConflict, "Client "+rep.ClientID+" already exists")
		return
	}
	rep.ID = newID()
	for i := range rep.ProtocolMappers {
		rep.ProtocolMappers[i].ID = newID()
	}
	m.Clients = append(m.Clients, &rep)
	s.created(w, a, "/admin/realms/"+m.Rep.Realm+"/clients/"+rep.ID)
}

// clientOf returns the client the path names (caller holds a.mu), or answers 404.
func clientOf(w http.ResponseWriter, r *http.Request, a *admin) *keycloak.ClientRepresentation {
	m := realmOf(w, r, a)
	if m == nil {
		return nil
	}
	c := m.client(r.PathValue("id"))
	if c == nil {
		writeError(w, http.StatusNotFound, "Could not find client")
	}
	return c
}

func (s *Server) createMapper(w http.ResponseWriter, r *http.Request, a *admin) {
	var rep keycloak.ProtocolMapperRepresentation
	if !decode(w, r, &rep) {
		return
	}
	if rep.Name == "" || rep.ProtocolMapper == "" {
		writeError(w, http.StatusBadRequest, "name and protocolMapper are required")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := clientOf(w, r, a)
	if c == nil {
		return
	}
	if slices.ContainsFunc(c.ProtocolMappers, func(m keycloak.ProtocolMapperRepresentation) bool { return m.Name == rep.Name }) {
		writeError(w, http.StatusConflict, "Protocol mapper exists with same name")
		return
	}
	rep.ID = newID()
	c.ProtocolMappers = append(c.ProtocolMappers, rep)
	s.created(w, a, "/admin/realms/"+r.PathValue("realm")+"/clients/"+c.ID+"/protocol-mappers/models/"+rep.ID)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, a *admin) {
	var rep keycloak.UserRepresentation
	if !decode(w, r, &rep) {
		return
	}
	rep.Username = strings.ToLower(rep.Username)
	if rep.Username == "" {
		writeError(w, http.StatusBadRequest, "username is required")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m := realmOf(w, r, a)
	if m == nil {
		return
	}
	for _, u := range m.Users {
		if u.Username == rep.Username {
			writeError(w, http.StatusConflict, "User exists with same username")
			return
		}
		if rep.Email != "" && strings.EqualFold(u.Email, rep.Email) {
			writeError(w, http.StatusConflict, "User exists with same email")
			return
		}
	}
	rep.ID = newID()
	m.Users = append(m.Users, rep)
	s.created(w, a, "/admin/realms/"+m.Rep.Realm+"/users/"+rep.ID)
}

// RevokeServiceTokens forgets every service token issued so far (as a Keycloak restart or a
// revoked session would), for tests of a client that must fetch a new one.
func (s *Server) RevokeServiceTokens() {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	clear(s.admin.tokens)
}

// SetAdminFailing makes the admin API and the token endpoint answer 500 (or serve again),
// for tests of a Keycloak that fails.
func (s *Server) SetAdminFailing(fail bool) { s.admin.failing.Store(fail) }

// tokenClaims are the claims of a development token of a realm created through the admin API:
// azp is its client (the one named, else the first) and aud what the client's audience
// mappers add; a username names one of its users, whose id is the sub. ok is false when the
// realm was not created through the admin API or has no client; status says why a token is
// refused.
func (a *admin) tokenClaims(realm, clientID, username, sub string) (claims map[string]any, ok bool, status int, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.state.Realms[realm]
	if m == nil {
		return nil, false, 0, ""
	}
	if !m.enabled() {
		return nil, true, http.StatusForbidden, "realm " + realm + " is disabled"
	}
	if len(m.Clients) == 0 {
		return nil, false, 0, ""
	}
	c := m.Clients[0]
	if clientID != "" {
		i := slices.IndexFunc(m.Clients, func(x *keycloak.ClientRepresentation) bool { return x.ClientID == clientID })
		if i < 0 {
			return nil, true, http.StatusNotFound, "no client " + clientID + " in realm " + realm
		}
		c = m.Clients[i]
	}
	claims = map[string]any{"sub": sub, "azp": c.ClientID, "preferred_username": sub}
	if username != "" {
		i := slices.IndexFunc(m.Users, func(u keycloak.UserRepresentation) bool { return u.Username == strings.ToLower(username) })
		if i < 0 {
			return nil, true, http.StatusNotFound, "no user " + username + " in realm " + realm
		}
		u := m.Users[i]
		claims["sub"], claims["preferred_username"] = u.ID, u.Username
		if u.Email != "" {
			claims["email"] = u.Email
		}
	}
	if aud := audiences(c); len(aud) > 0 {
		claims["aud"] = aud
	}
	if lifespan := m.Rep.AccessTokenLifespan; lifespan > 0 {
		claims["exp"] = time.Now().Add(time.Duration(lifespan) * time.Second).Unix()
	}
	return claims, true, 0, ""
}
