package server

import (
	"context"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/decisionlog"
	"github.com/neofast/neoauthz/internal/pdp"
)

// DecisionLog records decisions (*decisionlog.Recorder): Keep samples, Record queues without
// blocking.
type DecisionLog interface {
	Keep(tenantID string, allowed bool) bool
	Record(e decisionlog.Entry)
}

// SetDecisionLog makes the server record its decisions in l; call it before Serve.
func (s *Server) SetDecisionLog(l DecisionLog) { s.decisions = l }

// decisionFacts are what the decision log needs of a check beyond what record already holds.
type decisionFacts struct {
	start    time.Time
	method   string
	client   string
	tenantID string
	level    authn.Level
	resource pdp.Resource
	res      pdp.Result
}

func (f *decisionFacts) subject(sub pdp.Subject) { f.tenantID, f.level = sub.TenantID, sub.Level }

func (f *decisionFacts) result(r *pdp.Resource, res pdp.Result) {
	if r != nil {
		f.resource = *r
	}
	f.res = res
}

// logDecision hands a decision (allowed, denied or unauthenticated; not a refusal or a failure
// to decide) to the decision log. Nothing here blocks: Record drops rather than waits.
func (s *Server) logDecision(ctx context.Context, rec *record) {
	if s.decisions == nil {
		return
	}
	allowed := rec.result == resultAllowed
	if !allowed && rec.result != resultDenied && rec.result != resultUnauthenticated {
		return
	}
	f := &rec.logged
	if !s.decisions.Keep(f.tenantID, allowed) {
		return
	}
	e := decisionlog.Entry{
		DecisionID: rec.decisionID, TenantID: f.tenantID, User: rec.user, Permission: rec.permission,
		ResourceOwner: f.resource.OwnerID, ResourceTeam: f.resource.TeamID, ResourceTenant: f.resource.Tenant,
		Allowed: allowed, Reason: rec.reason, Version: f.res.Version,
		Transport: rec.api, Method: loggableMethod(f.method), Path: rec.path, Client: f.client,
	}
	switch f.level {
	case authn.LevelTenant:
		e.Level = decisionlog.LevelTenant
	case authn.LevelPlatform:
		e.Level = decisionlog.LevelPlatform
	}
	if allowed {
		e.GrantCode, e.GrantRole, e.GrantGroup = f.res.Grant.Code, f.res.Grant.Role, f.res.Grant.Group
	}
	if !f.start.IsZero() {
		e.Latency = time.Since(f.start)
	}
	if e.Client == "" && rec.api == apiGRPC {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			e.Client = p.Addr.String()
		}
	}
	s.decisions.Record(e)
}

// loggableMethod is the request method when it looks like one (an RFC 9110 token of at most
// 16 upper-case letters or dashes), else "": a pinned permission never has the method checked
// by the route table, and the client chooses it.
func loggableMethod(m string) string {
	if len(m) == 0 || len(m) > 16 {
		return ""
	}
	for i := 0; i < len(m); i++ {
		if (m[i] < 'A' || m[i] > 'Z') && m[i] != '-' {
			return ""
		}
	}
	return m
}
