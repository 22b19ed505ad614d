// Package devidp is a Keycloak-shaped token issuer for local development only: it serves
// realms' discovery documents and keys like Keycloak and mints access tokens for any subject
// on request. It must never be reachable from anywhere but the developer's machine.
package devidp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/authn/authntest"
)

// Config says where to listen and which realms to serve.
type Config struct {
	// Addr must be a loopback address: the issuer signs whatever it is asked to.
	Addr     string
	Realms   []string
	Audience string
}

// Start serves the issuer until Close. Tokens come from GET /dev/token?realm=R&sub=S.
func Start(cfg Config) (*authntest.Issuer, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, errors.New("the development issuer only listens on a loopback address")
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	var iss *authntest.Issuer
	iss = authntest.NewIssuer(authntest.WithListener(l), authntest.WithMux(func(mux *http.ServeMux) {
		mux.HandleFunc("GET /dev/token", func(w http.ResponseWriter, r *http.Request) {
			realm, sub := r.URL.Query().Get("realm"), r.URL.Query().Get("sub")
			if realm == "" || sub == "" || strings.ContainsAny(sub, "\x00\n") {
				http.Error(w, "realm and sub are required", http.StatusBadRequest)
				return
			}
			if iss.ActiveKey(realm) == nil {
				http.Error(w, "unknown realm", http.StatusNotFound)
				return
			}
			claims := map[string]any{"sub": sub, "typ": "Bearer", "azp": cfg.Audience,
				"preferred_username": sub, "exp": time.Now().Add(time.Hour).Unix()}
			if cfg.Audience != "" {
				claims["aud"] = cfg.Audience
			}
			tok, err := iss.Mint(realm, claims)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
		})
	}))
	for _, realm := range cfg.Realms {
		if _, err := iss.AddRealm(realm, "RS256"); err != nil {
			iss.Close()
			return nil, fmt.Errorf("realm %s: %w", realm, err)
		}
	}
	return iss, nil
}
