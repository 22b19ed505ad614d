package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/pdp"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// authzService implements neoauthz.v1.AuthorizationService. It is its own type because Server's
// Check is Envoy's.
type authzService struct {
	authzv1.UnimplementedAuthorizationServiceServer
	s *Server
}

var _ authzv1.AuthorizationServiceServer = authzService{}

// msgUntrustedPrincipal explains the PERMISSION_DENIED a principal from an untrusted caller
// gets. It is a caller (configuration) error, not a decision about the user, so it is a gRPC
// error rather than a CheckResponse.
const msgUntrustedPrincipal = "principal subjects are accepted only over the pdp's Unix socket or from an mTLS client " +
	"whose certificate identity is trusted; send a token instead"

// Check implements neoauthz.v1.AuthorizationService.Check.
func (a authzService) Check(ctx context.Context, req *authzv1.CheckRequest) (*authzv1.CheckResponse, error) {
	s := a.s
	start := time.Now()
	defer s.metrics.observe(apiGRPC, start)
	rec := record{api: apiGRPC, permission: permissionLabel(req.GetPermission()), logged: decisionFacts{start: start}}

	// An invalid request is refused before the subject is looked at (DESIGN §2).
	if err := checkPermission(req.GetPermission()); err != nil {
		return nil, s.fail(ctx, &rec, status.Error(codes.InvalidArgument, err.Error()))
	}
	tok, err := s.grpcToken(ctx, req.GetAtLeastVersion(), req.GetConsistencyToken(), &rec) //nolint:staticcheck // refused when set
	if err != nil {
		return nil, s.fail(ctx, &rec, err)
	}
	sub, unauth, err := s.grpcSubject(ctx, req.GetSubject(), &rec)
	if err != nil {
		return nil, s.fail(ctx, &rec, err)
	}
	if unauth {
		s.finish(ctx, &rec)
		return &authzv1.CheckResponse{Reason: authzv1.Reason_REASON_UNAUTHENTICATED, DecisionId: rec.decisionID}, nil
	}
	resource := resourceFromProto(req.GetResource())
	res, err := s.dec.Check(ctx, sub, pdp.Request{
		Permission:  req.GetPermission(),
		Resource:    resource,
		Consistency: tok,
	})
	if err == nil {
		err = consistent(res)
	}
	if err != nil {
		rec.err, rec.undecided = err, cannotDecide(err)
		return nil, s.fail(ctx, &rec, grpcError(err))
	}
	rec.logged.result(resource, res)
	s.recordResult(ctx, &rec, res)
	return responseFromResult(res), nil
}

// CheckBulk implements neoauthz.v1.AuthorizationService.CheckBulk: one subject, at most
// MaxBulkItems checks, decided by the pdp at one version.
func (a authzService) CheckBulk(ctx context.Context, req *authzv1.CheckBulkRequest) (*authzv1.CheckBulkResponse, error) {
	s := a.s
	start := time.Now()
	defer s.metrics.observe(apiGRPC, start)
	rec := record{api: apiGRPC, permission: "bulk", logged: decisionFacts{start: start}}

	items := req.GetItems()
	if len(items) > MaxBulkItems {
		return nil, s.fail(ctx, &rec, status.Errorf(codes.InvalidArgument, "too many items: %d, at most %d", len(items), MaxBulkItems))
	}
	reqs := make([]pdp.Request, len(items))
	for i, it := range items {
		if err := checkPermission(it.GetPermission()); err != nil {
			return nil, s.fail(ctx, &rec, status.Errorf(codes.InvalidArgument, "items[%d]: %s", i, err))
		}
		reqs[i] = pdp.Request{Permission: it.GetPermission(), Resource: resourceFromProto(it.GetResource())}
	}
	tok, err := s.grpcToken(ctx, req.GetAtLeastVersion(), req.GetConsistencyToken(), &rec) //nolint:staticcheck // refused when set
	if err != nil {
		return nil, s.fail(ctx, &rec, err)
	}
	for i := range reqs {
		reqs[i].Consistency = tok
	}
	sub, unauth, err := s.grpcSubject(ctx, req.GetSubject(), &rec)
	if err != nil {
		return nil, s.fail(ctx, &rec, err)
	}
	out := &authzv1.CheckBulkResponse{Results: make([]*authzv1.CheckResponse, len(items))}
	if unauth {
		for i := range items {
			r := rec
			r.permission = items[i].GetPermission() // valid: checked above
			if i > 0 {
				r.authn = "" // one credential failed once: authn_failures_total counts it once
			}
			s.finish(ctx, &r)
			out.Results[i] = &authzv1.CheckResponse{Reason: authzv1.Reason_REASON_UNAUTHENTICATED, DecisionId: rec.decisionID}
		}
		return out, nil
	}
	if len(reqs) == 0 {
		return out, nil
	}
	results, err := s.dec.CheckBulk(ctx, sub, reqs)
	if err == nil && len(results) != len(reqs) {
		err = fmt.Errorf("server: decision service returned %d results for %d checks", len(results), len(reqs))
	}
	for i := 0; err == nil && i < len(results); i++ {
		err = consistent(results[i])
	}
	if err != nil {
		rec.err, rec.undecided = err, cannotDecide(err)
		return nil, s.fail(ctx, &rec, grpcError(err))
	}
	for i, res := range results {
		r := rec
		r.permission = reqs[i].Permission
		r.logged.result(reqs[i].Resource, res)
		s.recordResult(ctx, &r, res)
		out.Results[i] = responseFromResult(res)
	}
	return out, nil
}

// ListPermissions implements neoauthz.v1.AuthorizationService.ListPermissions. It is not a
// decision, so an unacceptable token is the gRPC status UNAUTHENTICATED here.
func (a authzService) ListPermissions(ctx context.Context, req *authzv1.ListPermissionsRequest) (*authzv1.ListPermissionsResponse, error) {
	s := a.s
	rec := record{api: apiGRPC}
	tok, err := s.grpcToken(ctx, req.GetAtLeastVersion(), req.GetConsistencyToken(), &rec) //nolint:staticcheck // refused when set
	if err != nil {
		return nil, s.logRefusal(ctx, &rec, err)
	}
	sub, unauth, err := s.grpcSubject(ctx, req.GetSubject(), &rec)
	if err != nil {
		return nil, s.logRefusal(ctx, &rec, err)
	}
	if unauth {
		s.metrics.authnFailure.WithLabelValues(rec.authn).Inc()
		return nil, status.Error(codes.Unauthenticated, "unauthenticated: "+rec.authn)
	}
	perms, used, err := s.dec.ListPermissions(ctx, sub, tok)
	if err != nil {
		rec.err, rec.undecided = err, cannotDecide(err)
		return nil, s.logRefusal(ctx, &rec, grpcError(err))
	}
	version := used.Admin
	if sub.Level != authn.LevelPlatform && len(used.Tenants) == 1 {
		version = used.Tenants[0].Version
	}
	return &authzv1.ListPermissionsResponse{Permissions: perms, Version: version, ConsistencyToken: used.String()}, nil
}

// grpcToken reads a neoauthz.v1 request's consistency token and has the pdp prepare for it.
// The replaced at_least_version is refused rather than ignored.
func (s *Server) grpcToken(ctx context.Context, atLeastVersion uint64, raw string, rec *record) (consistency.Token, error) {
	if atLeastVersion != 0 {
		return consistency.Token{}, status.Error(codes.InvalidArgument, "at_least_version is replaced by consistency_token (the token an admin write returns)")
	}
	tok, bad, err := s.awaitToken(ctx, raw)
	switch {
	case bad != "":
		rec.err = err
		return consistency.Token{}, status.Error(codes.InvalidArgument, bad)
	case err != nil:
		rec.err, rec.undecided = err, cannotDecide(err)
		return consistency.Token{}, grpcError(err)
	}
	return tok, nil
}

// grpcSubject establishes the subject of a neoauthz.v1 request. unauth reports a token that
// is missing or not acceptable (a REASON_UNAUTHENTICATED decision; rec.authn says why); err
// is a gRPC status error for everything that is not a decision: no subject, a principal from
// an untrusted caller (PERMISSION_DENIED), or a failure to establish the subject.
func (s *Server) grpcSubject(ctx context.Context, subj *authzv1.Subject, rec *record) (sub pdp.Subject, unauth bool, err error) {
	var sErr error
	switch k := subj.GetKind().(type) {
	case *authzv1.Subject_Token:
		if k.Token == "" {
			return s.unauthenticated(rec, reasonMissingToken)
		}
		sub, sErr = s.dec.SubjectFromToken(ctx, k.Token)
	case *authzv1.Subject_Principal:
		if !s.trustedPeer(ctx) {
			return pdp.Subject{}, false, status.Error(codes.PermissionDenied, msgUntrustedPrincipal)
		}
		if k.Principal.GetUser() == "" {
			return pdp.Subject{}, false, status.Error(codes.InvalidArgument, "principal.user is required")
		}
		sub, sErr = s.dec.SubjectFromPrincipal(ctx, k.Principal.GetTenant(), k.Principal.GetUser())
	default:
		return pdp.Subject{}, false, status.Error(codes.InvalidArgument, "subject is required (token or principal)")
	}
	if sErr != nil {
		if label, ok := authnFailure(sErr); ok {
			return s.unauthenticated(rec, label)
		}
		rec.err, rec.undecided = sErr, cannotDecide(sErr)
		return pdp.Subject{}, false, grpcError(sErr)
	}
	rec.tenant, rec.user = tenantLabel(sub), sub.UserID
	rec.logged.subject(sub)
	return sub, false, nil
}

func (s *Server) unauthenticated(rec *record, label string) (pdp.Subject, bool, error) {
	rec.authn = label
	rec.result = resultUnauthenticated
	rec.reason = pdp.ReasonUnauthenticated.String()
	rec.decisionID = newDecisionID()
	return pdp.Subject{}, true, nil
}

// fail counts and logs a check that ended in a gRPC error, and returns that error.
func (s *Server) fail(ctx context.Context, rec *record, err error) error {
	rec.result = resultError
	rec.reason = status.Code(err).String()
	if rec.err == nil {
		rec.err = err
	}
	s.finish(ctx, rec)
	return err
}

// logRefusal logs an error of a call that is not a check (no metric sample).
func (s *Server) logRefusal(ctx context.Context, rec *record, err error) error {
	rec.reason = status.Code(err).String()
	if rec.err == nil {
		rec.err = err
	}
	s.finish(ctx, rec)
	return err
}

func (s *Server) recordResult(ctx context.Context, rec *record, res pdp.Result) {
	rec.result = resultLabel(res)
	rec.reason = res.Reason.String()
	rec.decisionID = res.DecisionID
	s.finish(ctx, rec)
}

// checkPermission refuses a requested permission that is not valid at any level; whether it
// is valid at the subject's level is the pdp's to say.
func checkPermission(p string) error {
	switch {
	case p == "":
		return errors.New("permission is required")
	case !pdp.ValidPermission(p):
		return fmt.Errorf("permission is not a permission code: resource.action or resource.action.scope, "+
			"segments of [a-z0-9_-], no '*', at most %d bytes", pdp.MaxPermissionBytes)
	}
	return nil
}

func resourceFromProto(r *authzv1.Resource) *pdp.Resource {
	if r == nil {
		return nil
	}
	return &pdp.Resource{OwnerID: r.GetOwnerId(), TeamID: r.GetTeamId(), Tenant: r.GetTenant()}
}

func responseFromResult(res pdp.Result) *authzv1.CheckResponse {
	out := &authzv1.CheckResponse{
		Allowed:          res.Allowed,
		Reason:           outcomeOf(res.Reason).proto,
		Version:          res.Version,
		DecisionId:       res.DecisionID,
		ConsistencyToken: res.TokenString(),
	}
	if res.Allowed {
		out.Grant = &authzv1.MatchedGrant{
			Code:   res.Grant.Code,
			Direct: res.Grant.Direct,
			Role:   res.Grant.Role,
			Group:  res.Grant.Group,
		}
	}
	return out
}
