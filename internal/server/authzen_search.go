package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pdp"
)

// Subject search page sizes.
const (
	defaultSearchLimit = 50
	maxSearchLimit     = 100
)

type azPage struct {
	Token string `json:"token"`
	Limit *int   `json:"limit"`
}

type azSearchRequest struct {
	azEvaluation
	Page *azPage `json:"page"`
}

type azPageOut struct {
	NextToken string `json:"next_token"`
	Count     int    `json:"count"`
}

type azEntityResult struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type azActionResult struct {
	Name string `json:"name"`
}

// azPageToken is the opaque page token of subject search: where the previous page ended,
// and a hash of the query, so that a token is refused with a different query.
type azPageToken struct {
	After string `json:"a"`
	Query string `json:"q"`
}

// authzenSearchSubject is POST /access/v1/search/subject: the users of the tenant that may
// perform the action on the resource. Candidates come from one PostgreSQL query per page
// (users holding, directly or through a role, a grant that may match the permission's
// resource and action); each is then decided by the engine, so a result is exactly an
// evaluation that would answer true. A page may hold fewer results than the limit, even
// none, while next_token says more candidates remain.
func (s *Server) authzenSearchSubject(r *http.Request, in *azRequest, body *azSearchRequest) (any, *azError) {
	e := &body.azEvaluation
	switch {
	case e.Subject == nil || e.Subject.Type == "":
		return nil, azBad("subject with type is required")
	case e.Action == nil || e.Action.Name == "":
		return nil, azBad("action with name is required")
	case e.Resource == nil || e.Resource.Type == "" || !e.Resource.HasID:
		return nil, azBad("resource with type and id is required")
	case in.caller.pep == nil:
		return nil, &azError{Status: http.StatusForbidden, Message: "subject search is for PEPs only"}
	}
	cfg := s.authzen.cfg
	m, ok := cfg.subjectMapping(e.Subject.Type)
	if !ok || m.Level == "platform" || m.ID == byEmail {
		return nil, azBad("subject search serves tenant-level subject types named by external id")
	}
	tenant, aerr := pepTenant(in, pathSearchSubject)
	if aerr != nil {
		return nil, aerr
	}
	e.Subject.ID = "" // the id of the searched entity is ignored
	if !in.caller.pep.allows(tenant) {
		return nil, errPEPTenant
	}
	if cfg.RouteResourceType != "" && e.Resource.Type == cfg.RouteResourceType {
		return nil, azBad("subject search does not serve route resources")
	}
	perm, ok := cfg.permission(e.Action.Name, e.Resource.Type)
	if !ok {
		return searchAnswer([]azEntityResult{}, ""), nil
	}
	resource, action, _, _, err := decision.ParseRequest(decision.LevelTenant, perm)
	if err != nil {
		return nil, azBad("action maps to %q, not a tenant-level permission", perm)
	}

	after, limit, queryHash, aerr := searchPage(tenant, e, body.Page)
	if aerr != nil {
		return nil, aerr
	}
	if limit == 0 {
		return searchAnswer([]azEntityResult{}, pageToken(after, queryHash)), nil
	}
	candidates, err := s.authzen.dir.SubjectCandidates(r.Context(), tenant, resource, action, after, limit)
	if err != nil {
		return nil, searchDirectoryError(err)
	}
	return s.searchFilter(r.Context(), in, candidates, limit, queryHash, e.Subject.Type, func(user string) (azSubject, azEvaluation, *azError) {
		sub, err := s.dec.SubjectFromPrincipal(r.Context(), tenant, user)
		if err != nil {
			return azSubject{}, azEvaluation{}, &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
		}
		return azSubject{Subject: sub}, azEvaluation{Subject: &azEntity{Type: e.Subject.Type, ID: user}, Action: e.Action, Resource: e.Resource}, nil
	})
}

// searchFilter decides, for each candidate of a page, the evaluation item builds, and answers
// with the candidates allowed and, when the page of candidates was full, the next page's token.
func (s *Server) searchFilter(ctx context.Context, in *azRequest, candidates []string, limit int, queryHash, typ string,
	item func(id string) (azSubject, azEvaluation, *azError)) (any, *azError) {
	results := []azEntityResult{}
	for _, id := range candidates {
		sub, ev, aerr := item(id)
		if aerr != nil {
			return nil, aerr
		}
		rec := record{api: apiAuthZEN}
		d, aerr := s.authzenCheckAs(ctx, in, sub, &ev, &rec)
		s.authzenRecord(ctx, &rec, d, aerr)
		if aerr != nil {
			return nil, aerr
		}
		if d.Decision {
			results = append(results, azEntityResult{Type: typ, ID: id})
		}
	}
	next := ""
	if len(candidates) == limit {
		next = pageToken(candidates[len(candidates)-1], queryHash)
	}
	return searchAnswer(results, next), nil
}

func searchAnswer[T any](results []T, next string) any {
	if results == nil {
		results = []T{}
	}
	return struct {
		Page    azPageOut `json:"page"`
		Results []T       `json:"results"`
	}{azPageOut{NextToken: next, Count: len(results)}, results}
}

// searchPage reads the page of a paginated search: where to start, how many candidates, and
// the hash of the query the page token must carry.
func searchPage(tenant string, e *azEvaluation, page *azPage) (after string, limit int, queryHash string, aerr *azError) {
	limit = defaultSearchLimit
	var pageLimit *int
	if page != nil {
		pageLimit = page.Limit
	}
	queryHash = searchQueryHash(tenant, e, pageLimit)
	if page == nil {
		return "", limit, queryHash, nil
	}
	if page.Limit != nil {
		if *page.Limit < 0 {
			return "", 0, "", azBad("page.limit must not be negative")
		}
		limit = min(*page.Limit, maxSearchLimit)
	}
	if page.Token != "" {
		tok, ok := decodePageToken(page.Token)
		if !ok || tok.Query != queryHash {
			return "", 0, "", azBad("page.token does not belong to this query")
		}
		after = tok.After
	}
	return after, limit, queryHash, nil
}

// searchQueryHash identifies a search query (everything but the page token).
func searchQueryHash(tenant string, e *azEvaluation, limit *int) string {
	var action string
	if e.Action != nil {
		action = e.Action.Name
	}
	b, _ := json.Marshal(struct {
		T, S, SID, A, RT, RID string
		P                     any
		L                     *int
	}{tenant, e.Subject.Type, e.Subject.ID, action, e.Resource.Type, e.Resource.ID, e.Resource.Properties, limit})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func pageToken(after, query string) string {
	b, _ := json.Marshal(azPageToken{After: after, Query: query})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (azPageToken, bool) {
	var t azPageToken
	if len(s) > 2*maxAuthZENIDLen+128 {
		return t, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || len(t.After) > maxAuthZENIDLen {
		return t, false
	}
	return t, true
}

// authzenSearchAction is POST /access/v1/search/action: the actions the subject may perform
// on the resource. The candidates are the mapped actions that apply to the resource type and
// the subject's effective permission codes whose resource segment is the resource type (the
// names the default mapping accepts); each is decided like an evaluation. The answer is the
// whole result set (no pagination).
func (s *Server) authzenSearchAction(r *http.Request, in *azRequest, body *azSearchRequest) (any, *azError) {
	e := &body.azEvaluation
	switch {
	case e.Subject == nil || e.Subject.Type == "" || e.Subject.ID == "":
		return nil, azBad("subject with type and id is required")
	case e.Resource == nil || e.Resource.Type == "" || !e.Resource.HasID:
		return nil, azBad("resource with type and id is required")
	case len(e.Subject.ID) > maxAuthZENIDLen || len(e.Resource.ID) > maxAuthZENResIDLen:
		return nil, azBad("subject.id or resource.id is too long")
	}
	rec := record{api: apiAuthZEN}
	sub, deny, aerr := s.authzenSubject(r.Context(), in, e.Subject, &rec)
	if aerr != nil {
		return nil, aerr
	}
	results := []azActionResult{}
	if deny != "" {
		return searchAnswer(results, ""), nil
	}
	cfg := s.authzen.cfg
	names := map[string]bool{}
	for _, a := range cfg.Actions {
		if a.ResourceType == "" || a.ResourceType == e.Resource.Type {
			names[a.Name] = true
		}
	}
	if cfg.RouteResourceType == "" || e.Resource.Type != cfg.RouteResourceType {
		codes, _, err := s.dec.ListPermissions(r.Context(), sub.Subject, in.consistency)
		if err != nil {
			return nil, &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
		}
		for _, c := range codes {
			if res, _, ok := strings.Cut(c, "."); ok && res == e.Resource.Type {
				names[c] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		item := azEvaluation{Subject: e.Subject, Action: &azAction{Name: name}, Resource: e.Resource, Context: e.Context}
		rec := record{api: apiAuthZEN}
		d, aerr := s.authzenCheckAs(r.Context(), in, sub, &item, &rec)
		s.authzenRecord(r.Context(), &rec, d, aerr)
		if aerr != nil {
			if aerr.Status == http.StatusBadRequest {
				continue // this action does not apply to this resource (e.g. a code check)
			}
			return nil, aerr
		}
		if d.Decision {
			results = append(results, azActionResult{Name: name})
		}
	}
	return searchAnswer(results, ""), nil
}

// authzenSearchesResources reports whether resource search is served: the pdp can list teams
// and some resource type is searched as teams.
func (s *Server) authzenSearchesResources() bool {
	return s.authzen.dir != nil && s.authzen.cfg.searchesTeams()
}

// authzenSearchResource is POST /access/v1/search/resource. neoauthz stores no resources but
// the tenant's teams, so it answers for resource types mapped with "search": "teams": the
// teams (id = team id) on which the subject may perform the action, each decided like an
// evaluation whose resource is that team. One PostgreSQL query per page lists the teams. Any
// other type is a 400.
func (s *Server) authzenSearchResource(r *http.Request, in *azRequest, body *azSearchRequest) (any, *azError) {
	e := &body.azEvaluation
	switch {
	case e.Subject == nil || e.Subject.Type == "" || e.Subject.ID == "":
		return nil, azBad("subject with type and id is required")
	case e.Action == nil || e.Action.Name == "":
		return nil, azBad("action with name is required")
	case e.Resource == nil || e.Resource.Type == "":
		return nil, azBad("resource with type is required")
	case len(e.Subject.ID) > maxAuthZENIDLen:
		return nil, azBad("subject.id is too long")
	}
	e.Resource.ID = "" // the id of the searched entity is ignored
	cfg := s.authzen.cfg
	m := cfg.resourceMapping(e.Resource.Type)
	if m.Search != searchTeams {
		return nil, azBad("resource search serves resource types mapped with \"search\": \"teams\": neoauthz stores no other resources")
	}
	if perm, ok := cfg.permission(e.Action.Name, e.Resource.Type); !ok || strings.Count(perm, ".") != 1 {
		return nil, azBad("action must map to a resource check (resource.action) for a team search")
	}
	rec := record{api: apiAuthZEN}
	sub, deny, aerr := s.authzenSubject(r.Context(), in, e.Subject, &rec)
	if aerr != nil {
		return nil, aerr
	}
	if deny != "" || sub.TenantID == "" {
		return searchAnswer([]azEntityResult{}, ""), nil
	}
	after, limit, queryHash, aerr := searchPage(sub.TenantID, e, body.Page)
	if aerr != nil {
		return nil, aerr
	}
	if limit == 0 {
		return searchAnswer([]azEntityResult{}, pageToken(after, queryHash)), nil
	}
	teams, err := s.authzen.dir.Teams(r.Context(), sub.TenantID, after, limit)
	if err != nil {
		return nil, searchDirectoryError(err)
	}
	return s.searchFilter(r.Context(), in, teams, limit, queryHash, e.Resource.Type, func(team string) (azSubject, azEvaluation, *azError) {
		id, _ := json.Marshal(team)
		return sub, azEvaluation{Subject: e.Subject, Action: e.Action, Context: e.Context, Resource: &azResource{
			Type: e.Resource.Type, ID: team, HasID: true, Properties: map[string]json.RawMessage{m.Team: id}}}, nil
	})
}

// searchDirectoryError answers a search whose directory read failed: 403 for a tenant of a
// region this pdp does not serve (ask a pdp of that region), else "cannot decide now".
func searchDirectoryError(err error) *azError {
	if errors.Is(err, pdp.ErrNotServedInRegion) {
		return &azError{Status: http.StatusForbidden, Message: reasonOutcomes[pdp.ReasonNotServedInRegion].message, err: err}
	}
	return &azError{Status: http.StatusServiceUnavailable, Message: unavailableOutcome.message, err: err}
}
