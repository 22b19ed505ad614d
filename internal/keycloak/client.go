// Package keycloak is a client of Keycloak's Admin REST API, authenticated as a service
// account (client credentials), and the provisioning of tenants' realms built on it.
package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"
)

// Errors of the Admin REST API, for errors.Is.
var (
	// ErrUnauthorized means the service account's credentials (or its token) were refused.
	ErrUnauthorized = errors.New("keycloak refused the service account's credentials")
	// ErrForbidden means the service account lacks a role the call needs.
	ErrForbidden = errors.New("keycloak refused the call: the service account lacks a role (create-realm, manage-realm, manage-clients, manage-users)")
	// ErrNotFound means the realm, client or user does not exist.
	ErrNotFound = errors.New("not found in keycloak")
	// ErrConflict means the object exists already.
	ErrConflict = errors.New("already exists in keycloak")
)

// Secret is a credential that prints as [redacted] however it is formatted or logged.
type Secret string

// String, GoString, Format, LogValue and MarshalJSON all hide the value.
func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, "[redacted]") }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
func (s Secret) reveal() string             { return string(s) }

// DefaultAdminRealm is the realm the service account is looked for in by default.
const DefaultAdminRealm = "master"

// DefaultTimeout bounds one call to Keycloak.
const DefaultTimeout = 10 * time.Second

// Config locates Keycloak and the service account neoauthz calls it as.
type Config struct {
	// BaseURL is Keycloak's base URL, e.g. https://sso.example.com (with /auth for Keycloak
	// before 17).
	BaseURL string
	// Realm is the realm of the service account: master, or a dedicated admin realm.
	Realm string
	// ClientID is the service account's client (client credentials grant enabled).
	ClientID string
	// ClientSecret is its secret; never logged.
	ClientSecret Secret
	// Timeout bounds each call.
	Timeout time.Duration
}

// Environment variables read by ConfigFromEnv.
const (
	EnvURL        = "NEOAUTHZ_KEYCLOAK_URL"
	EnvAdminRealm = "NEOAUTHZ_KEYCLOAK_ADMIN_REALM"
	EnvClientID   = "NEOAUTHZ_KEYCLOAK_CLIENT_ID"
	EnvSecret     = "NEOAUTHZ_KEYCLOAK_CLIENT_SECRET"
	EnvSecretFile = "NEOAUTHZ_KEYCLOAK_CLIENT_SECRET_FILE"
)

// ConfigFromEnv reads the Keycloak settings; ok is false when NEOAUTHZ_KEYCLOAK_URL is unset
// (realm provisioning is off).
func ConfigFromEnv(getenv func(string) string) (c Config, ok bool, err error) {
	c = Config{BaseURL: getenv(EnvURL), Realm: getenv(EnvAdminRealm), ClientID: getenv(EnvClientID),
		ClientSecret: Secret(getenv(EnvSecret)), Timeout: DefaultTimeout}
	if c.BaseURL == "" {
		return c, false, nil
	}
	if c.Realm == "" {
		c.Realm = DefaultAdminRealm
	}
	if f := getenv(EnvSecretFile); f != "" {
		if c.ClientSecret != "" {
			return c, true, fmt.Errorf("set %s or %s, not both", EnvSecret, EnvSecretFile)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return c, true, fmt.Errorf("%s: %w", EnvSecretFile, err)
		}
		c.ClientSecret = Secret(strings.TrimSpace(string(b)))
	}
	return c, true, c.Validate()
}

// Validate names what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("%s: %q is not an http(s) base URL", EnvURL, c.BaseURL))
	}
	if !ValidRealmName(c.Realm) {
		errs = append(errs, fmt.Errorf("%s: %q is not a realm name", EnvAdminRealm, c.Realm))
	}
	if c.ClientID == "" || len(c.ClientID) > 255 {
		errs = append(errs, fmt.Errorf("%s is required: the service account's client id", EnvClientID))
	}
	if c.ClientSecret == "" {
		errs = append(errs, fmt.Errorf("%s or %s is required: the service account's secret", EnvSecret, EnvSecretFile))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("the Keycloak timeout must be positive"))
	}
	return errors.Join(errs...)
}

// ValidRealmName reports whether name is a realm name neoauthz sends to Keycloak (the
// grammar of tenants' realms: lowercase letters, digits, _ and -).
func ValidRealmName(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	return strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == ""
}

// Client calls the Admin REST API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// New returns a client for cfg; httpClient nil means a default one.
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Client{cfg: cfg, http: httpClient}, nil
}

// serviceToken returns a cached service-account token, fetching one when none is valid for
// at least a few more seconds.
func (c *Client) serviceToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.expires) {
		return c.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret.reveal()}}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+fmt.Sprintf(pathToken, url.PathEscape(c.cfg.Realm)),
		strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("keycloak token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusBadRequest:
		var te TokenError
		_ = json.Unmarshal(body, &te)
		return "", fmt.Errorf("service account %q of realm %s: %s: %w", c.cfg.ClientID, c.cfg.Realm, printable(te.Error), ErrUnauthorized)
	default:
		return "", fmt.Errorf("keycloak token endpoint answered %d", resp.StatusCode)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", errors.New("keycloak token endpoint: no access token in the answer")
	}
	// Renew a little before Keycloak's expiry so that a token never expires in flight.
	life := time.Duration(tr.ExpiresIn)*time.Second - 10*time.Second
	if life < 0 {
		life = 0
	}
	c.token, c.expires = tr.AccessToken, time.Now().Add(life)
	return c.token, nil
}

func (c *Client) dropToken(tok string) {
	c.mu.Lock()
	if c.token == tok {
		c.token = ""
	}
	c.mu.Unlock()
}

// printable keeps at most 100 printable ASCII characters of s, for error messages built
// from a server's answer.
func printable(s string) string {
	b := make([]byte, 0, min(len(s), 100))
	for i := 0; i < len(s) && len(b) < 100; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// call sends one Admin REST API request (in, when not nil, as JSON), decodes a 200 answer
// into out (when not nil) and returns the Location header of a 201. A 401 fetches a new
// service token and retries once.
func (c *Client) call(ctx context.Context, method, p string, query url.Values, in, out any) (location string, err error) {
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return "", err
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.serviceToken(ctx)
		if err != nil {
			return "", err
		}
		status, loc, msg, err := c.send(ctx, tok, method, p, query, body, out)
		if err != nil {
			return "", err
		}
		what := method + " " + p
		switch status {
		case http.StatusOK, http.StatusCreated, http.StatusNoContent:
			return loc, nil
		case http.StatusUnauthorized:
			c.dropToken(tok)
			if attempt == 0 {
				continue
			}
			return "", fmt.Errorf("%s: %w", what, ErrUnauthorized)
		case http.StatusForbidden:
			return "", fmt.Errorf("%s: %w", what, ErrForbidden)
		case http.StatusNotFound:
			return "", fmt.Errorf("%s: %w", what, ErrNotFound)
		case http.StatusConflict:
			return "", fmt.Errorf("%s: %s: %w", what, msg, ErrConflict)
		default:
			return "", fmt.Errorf("%s: keycloak answered %d %s", what, status, msg)
		}
	}
}

func (c *Client) send(ctx context.Context, tok, method, p string, query url.Values, body []byte, out any) (status int, location, msg string, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u := c.cfg.BaseURL + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("keycloak %s %s: %w", method, p, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, "", "", fmt.Errorf("keycloak %s %s: %w", method, p, err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, "", "", fmt.Errorf("keycloak %s %s: the answer does not parse: %w", method, p, err)
		}
	}
	if resp.StatusCode >= 400 {
		var e ErrorRepresentation
		_ = json.Unmarshal(raw, &e)
		msg = printable(e.ErrorMessage + e.Error)
	}
	return resp.StatusCode, resp.Header.Get("Location"), msg, nil
}

// idFromLocation returns the last path segment of a 201's Location: the id of what was made.
func idFromLocation(loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Path == "" {
		return "", fmt.Errorf("keycloak: created, but the Location %q names nothing", printable(loc))
	}
	id := path.Base(u.Path)
	if id == "" || id == "/" || id == "." || len(id) > 100 {
		return "", fmt.Errorf("keycloak: created, but the Location %q names nothing", printable(loc))
	}
	return id, nil
}

func realmPath(format, realm string, rest ...string) string {
	args := []any{url.PathEscape(realm)}
	for _, r := range rest {
		args = append(args, url.PathEscape(r))
	}
	return fmt.Sprintf(format, args...)
}

// CreateRealm creates a realm (ErrConflict when one of that name exists).
func (c *Client) CreateRealm(ctx context.Context, r RealmRepresentation) error {
	_, err := c.call(ctx, http.MethodPost, pathRealms, nil, r, nil)
	return err
}

// GetRealm returns a realm (ErrNotFound when there is none).
func (c *Client) GetRealm(ctx context.Context, realm string) (RealmRepresentation, error) {
	var r RealmRepresentation
	_, err := c.call(ctx, http.MethodGet, realmPath(pathRealm, realm), nil, nil, &r)
	return r, err
}

// UpdateRealm changes the fields r sets.
func (c *Client) UpdateRealm(ctx context.Context, realm string, r RealmRepresentation) error {
	_, err := c.call(ctx, http.MethodPut, realmPath(pathRealm, realm), nil, r, nil)
	return err
}

// DeleteRealm deletes a realm with everything in it.
func (c *Client) DeleteRealm(ctx context.Context, realm string) error {
	_, err := c.call(ctx, http.MethodDelete, realmPath(pathRealm, realm), nil, nil, nil)
	return err
}

// CreateClient creates a client and returns its internal id.
func (c *Client) CreateClient(ctx context.Context, realm string, cl ClientRepresentation) (string, error) {
	loc, err := c.call(ctx, http.MethodPost, realmPath(pathClients, realm), nil, cl, nil)
	if err != nil {
		return "", err
	}
	return idFromLocation(loc)
}

// FindClient returns the client whose clientId is clientID (ErrNotFound when none).
func (c *Client) FindClient(ctx context.Context, realm, clientID string) (ClientRepresentation, error) {
	var list []ClientRepresentation
	if _, err := c.call(ctx, http.MethodGet, realmPath(pathClients, realm), url.Values{"clientId": {clientID}}, nil, &list); err != nil {
		return ClientRepresentation{}, err
	}
	for _, cl := range list {
		if cl.ClientID == clientID {
			return cl, nil
		}
	}
	return ClientRepresentation{}, fmt.Errorf("client %q of realm %s: %w", clientID, realm, ErrNotFound)
}

// ProtocolMappers lists a client's protocol mappers (id is the client's internal id).
func (c *Client) ProtocolMappers(ctx context.Context, realm, id string) ([]ProtocolMapperRepresentation, error) {
	var list []ProtocolMapperRepresentation
	_, err := c.call(ctx, http.MethodGet, realmPath(pathMappers, realm, id), nil, nil, &list)
	return list, err
}

// CreateProtocolMapper adds a protocol mapper to a client.
func (c *Client) CreateProtocolMapper(ctx context.Context, realm, id string, m ProtocolMapperRepresentation) error {
	_, err := c.call(ctx, http.MethodPost, realmPath(pathMappers, realm, id), nil, m, nil)
	return err
}

// CreateUser creates a user and returns its id.
func (c *Client) CreateUser(ctx context.Context, realm string, u UserRepresentation) (string, error) {
	loc, err := c.call(ctx, http.MethodPost, realmPath(pathUsers, realm), nil, u, nil)
	if err != nil {
		return "", err
	}
	return idFromLocation(loc)
}

// FindUser returns the user whose username is username, exactly (ErrNotFound when none).
func (c *Client) FindUser(ctx context.Context, realm, username string) (UserRepresentation, error) {
	var list []UserRepresentation
	if _, err := c.call(ctx, http.MethodGet, realmPath(pathUsers, realm), url.Values{"username": {username}, "exact": {"true"}}, nil, &list); err != nil {
		return UserRepresentation{}, err
	}
	for _, u := range list {
		if strings.EqualFold(u.Username, username) {
			return u, nil
		}
	}
	return UserRepresentation{}, fmt.Errorf("user %q of realm %s: %w", username, realm, ErrNotFound)
}
