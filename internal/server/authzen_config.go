package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pdp"
)

// AuthZENConfig is the AuthZEN file (Config.AuthZENConfigPath): who may ask (PEPs) and how an
// AuthZEN request maps onto a neoauthz check. README "AuthZEN" documents every field.
type AuthZENConfig struct {
	// PolicyDecisionPoint is the pdp's public https base URL, published as
	// policy_decision_point and used to build the endpoint URLs of the metadata. Empty: the
	// base is taken from the metadata request (scheme and Host), which suits local use only.
	PolicyDecisionPoint string `json:"policy_decision_point"`
	// PEPs are the callers trusted to name the subject of a request.
	PEPs []PEPConfig `json:"peps"`
	// SubjectTokens lets callers that are not PEPs ask about the bearer of a token passed as
	// subject.properties.token (a bearer token of the subject itself, validated like any
	// other); the subject must then be the token's.
	SubjectTokens bool `json:"subject_tokens"`
	// Subjects maps a subject.type to how its id names a user. Empty: {"user": {}} (the id is
	// the user's external id in the bound tenant).
	Subjects map[string]SubjectMapping `json:"subjects"`
	// Resources maps a resource.type ("*": every other type) to the properties that carry the
	// owner, team and target tenant of a resource check. A type without a mapping reads
	// owner_id, team_id and tenant.
	Resources map[string]ResourceMapping `json:"resources"`
	// Actions map action.name (and optionally resource.type) to a permission. An action with
	// no mapping is used as the permission itself when it is one ("todos.update",
	// "reports.read.tenant"); otherwise it is denied with reason unknown_action.
	Actions []ActionMapping `json:"actions"`
	// RouteResourceType, when set, is the resource.type whose id is a request path and whose
	// action.name is the HTTP method: such a request is decided through the route table, as
	// ext_authz and forward auth decide the same request (API-gateway PEPs).
	RouteResourceType string `json:"route_resource_type"`
}

// PEPConfig is one trusted caller. It is identified by an mTLS client certificate (the HTTP
// port must then serve TLS: Config.HTTPTLS) or by a bearer token of a configured client.
type PEPConfig struct {
	// Name appears in logs.
	Name string `json:"name"`
	// MTLSIdentities are certificate identities (subject CN, DNS SAN or URI SAN such as a
	// SPIFFE id) of this PEP.
	MTLSIdentities []string `json:"mtls_identities"`
	// Client identifies the PEP by a bearer token in the Authorization header.
	Client *PEPClient `json:"client"`
	// Tenants are the tenants (slug or id) the PEP may ask about; "*" is every tenant.
	Tenants []string `json:"tenants"`
	// Platform lets the PEP ask about platform-level subjects.
	Platform bool `json:"platform"`
}

// PEPClient names the token a PEP presents: a token of realm Realm, issued to ClientID (its
// azp), and, when Subject is set, for that subject only (a Keycloak service account).
type PEPClient struct {
	Realm    string `json:"realm"`
	ClientID string `json:"client_id"`
	Subject  string `json:"subject"`
}

// SubjectMapping says how the id of a subject type names a user.
type SubjectMapping struct {
	// ID is "external_id" (the default: the token sub) or "email" (looked up in the tenant's
	// users; a PostgreSQL read per request, and an email two users share names nobody).
	ID string `json:"id"`
	// Level is "tenant" (the default) or "platform" (platform users; Tenant is then the
	// resource property that names the target tenant).
	Level string `json:"level"`
}

// ResourceMapping names the resource properties of a resource check.
type ResourceMapping struct {
	Owner string `json:"owner"`
	// OwnerBy is "external_id" (default) or "email": how the owner property names a user.
	OwnerBy string `json:"owner_by"`
	Team    string `json:"team"`
	Tenant  string `json:"tenant"`
	// Search is "teams" when the resources of this type are the tenant's teams (id = team id,
	// put in the Team property): resource search then lists the teams the subject may act on.
	// neoauthz stores no other resources, so no other type can be searched.
	Search string `json:"search"`
}

// searchTeams is the ResourceMapping.Search value for team resources.
const searchTeams = "teams"

// ActionMapping maps an action (for one resource type, or any when ResourceType is empty) to
// a permission: a code ("todos.read.tenant", a code check) or "resource.action" (a resource
// check on the mapped resource properties).
type ActionMapping struct {
	Name         string `json:"name"`
	ResourceType string `json:"resource_type"`
	Permission   string `json:"permission"`
}

// Values of SubjectMapping.ID and ResourceMapping.OwnerBy.
const (
	byExternalID = "external_id"
	byEmail      = "email"
)

// Limits of the AuthZEN file.
const (
	maxAuthZENNameLen = 128
	anyTenant         = "*"
	anyResourceType   = "*"
)

// defaultResourceMapping is used for a resource type without a mapping.
var defaultResourceMapping = ResourceMapping{Owner: "owner_id", Team: "team_id", Tenant: "tenant"}

// LoadAuthZENConfig reads and validates an AuthZEN file. Unknown fields are refused: a typo
// in a trust setting must not pass silently.
func LoadAuthZENConfig(path string) (*AuthZENConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authzen config: %w", err)
	}
	return ParseAuthZENConfig(b)
}

// ParseAuthZENConfig parses and validates the JSON of an AuthZEN file.
func ParseAuthZENConfig(b []byte) (*AuthZENConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c AuthZENConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("authzen config: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("authzen config: trailing data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem at once.
func (c *AuthZENConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("authzen config: "+format, args...)) }
	if c.PolicyDecisionPoint != "" {
		u, err := url.Parse(c.PolicyDecisionPoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("policy_decision_point %q must be an https URL without query or fragment", c.PolicyDecisionPoint)
		}
	}
	mtls := map[string]string{}
	for i, p := range c.PEPs {
		name := fmt.Sprintf("peps[%d]", i)
		if p.Name == "" || len(p.Name) > maxAuthZENNameLen {
			bad("%s: name is required (at most %d bytes)", name, maxAuthZENNameLen)
		}
		if len(p.MTLSIdentities) == 0 && p.Client == nil {
			bad("%s: needs mtls_identities or client", name)
		}
		for _, id := range p.MTLSIdentities {
			if strings.TrimSpace(id) == "" {
				bad("%s: empty mtls identity", name)
			} else if other, dup := mtls[id]; dup {
				bad("%s: mtls identity %q is also %s's", name, id, other)
			}
			mtls[id] = name
		}
		if p.Client != nil && (p.Client.Realm == "" || p.Client.ClientID == "") {
			bad("%s: client needs realm and client_id", name)
		}
		if len(p.Tenants) == 0 && !p.Platform {
			bad("%s: names no tenant (tenants) and not the platform (platform)", name)
		}
		for _, t := range p.Tenants {
			if t != anyTenant && !pdp.ValidTenantName(t) {
				bad("%s: tenant %q is not a tenant slug or id", name, t)
			}
		}
	}
	for typ, m := range c.Subjects {
		if typ == "" || len(typ) > maxAuthZENNameLen {
			bad("subjects: bad subject type %q", typ)
		}
		if m.ID != "" && m.ID != byExternalID && m.ID != byEmail {
			bad("subjects[%q].id must be %q or %q", typ, byExternalID, byEmail)
		}
		if m.Level != "" && m.Level != "tenant" && m.Level != "platform" {
			bad("subjects[%q].level must be tenant or platform", typ)
		}
		if m.Level == "platform" && m.ID == byEmail {
			bad("subjects[%q]: platform subjects are named by external id", typ)
		}
	}
	for typ, m := range c.Resources {
		if typ == "" || len(typ) > maxAuthZENNameLen {
			bad("resources: bad resource type %q", typ)
		}
		if m.OwnerBy != "" && m.OwnerBy != byExternalID && m.OwnerBy != byEmail {
			bad("resources[%q].owner_by must be %q or %q", typ, byExternalID, byEmail)
		}
		if m.Search != "" && (m.Search != searchTeams || m.Team == "") {
			bad("resources[%q].search can only be %q, with team naming the property of the team id", typ, searchTeams)
		}
	}
	seen := map[[2]string]bool{}
	for i, a := range c.Actions {
		if a.Name == "" || len(a.Name) > maxAuthZENNameLen {
			bad("actions[%d]: name is required (at most %d bytes)", i, maxAuthZENNameLen)
		}
		key := [2]string{a.Name, a.ResourceType}
		if seen[key] {
			bad("actions[%d]: %q for resource type %q is mapped twice", i, a.Name, a.ResourceType)
		}
		seen[key] = true
		if !validPermission(a.Permission) {
			bad("actions[%d]: permission %q is not resource.action or resource.action.scope", i, a.Permission)
		}
	}
	if len(c.RouteResourceType) > maxAuthZENNameLen {
		bad("route_resource_type is too long")
	}
	return errors.Join(errs...)
}

// validPermission reports whether p is a permission a request may carry at either level.
func validPermission(p string) bool {
	for _, l := range []decision.Level{decision.LevelTenant, decision.LevelPlatform} {
		if _, _, _, _, err := decision.ParseRequest(l, p); err == nil {
			return true
		}
	}
	return false
}

// searchesTeams reports whether some resource type is searched as teams.
func (c *AuthZENConfig) searchesTeams() bool {
	for _, m := range c.Resources {
		if m.Search == searchTeams {
			return true
		}
	}
	return false
}

// subjectMapping returns the mapping of a subject type, and whether the type is served.
func (c *AuthZENConfig) subjectMapping(typ string) (SubjectMapping, bool) {
	if len(c.Subjects) == 0 {
		return SubjectMapping{}, typ == "user"
	}
	m, ok := c.Subjects[typ]
	return m, ok
}

// resourceMapping returns the mapping of a resource type.
func (c *AuthZENConfig) resourceMapping(typ string) ResourceMapping {
	if m, ok := c.Resources[typ]; ok {
		return m
	}
	if m, ok := c.Resources[anyResourceType]; ok {
		return m
	}
	return defaultResourceMapping
}

// permission returns the permission an action on a resource type maps to: the mapping for
// the type, then the type-less mapping, then the action name when it is a permission.
func (c *AuthZENConfig) permission(action, resourceType string) (string, bool) {
	var fallback string
	for _, a := range c.Actions {
		if a.Name != action {
			continue
		}
		if a.ResourceType == resourceType {
			return a.Permission, true
		}
		if a.ResourceType == "" {
			fallback = a.Permission
		}
	}
	if fallback != "" {
		return fallback, true
	}
	if validPermission(action) {
		return action, true
	}
	return "", false
}

// allows reports whether p may ask about tenant (a slug or id as the request named it, and
// the tenant's id and slug once resolved).
func (p *PEPConfig) allows(names ...string) bool {
	for _, t := range p.Tenants {
		if t == anyTenant {
			return true
		}
		for _, n := range names {
			if n != "" && strings.EqualFold(t, n) {
				return true
			}
		}
	}
	return false
}
