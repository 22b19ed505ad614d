package adminapi

import (
	"errors"
	"net/http"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pgstore"
)

func errForbidden(msg string, details map[string]any) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg, Details: details}
}

// authorize authenticates the caller (a platform-realm token) and decides the route's
// permission. The user's permission set is loaded and compiled for every request: the admin API
// is low-traffic and must never act on a revoked grant, so nothing is cached here.
func (s *Server) authorize(c *call) error {
	rt := c.route
	if rt.public() {
		return nil
	}
	token, ok := bearer(c.r)
	if !ok {
		return &apiError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "an Authorization: Bearer token of the platform realm is required"}
	}
	id, err := s.Validator.Validate(c.ctx(), token)
	if err != nil {
		var ae *authn.Error
		if errors.As(err, &ae) && ae.Kind.Unauthenticated() {
			if ae.Kind == authn.KindTenantNotActive {
				return errForbidden("tenant tokens cannot use the admin API", nil)
			}
			return &apiError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "invalid token: " + ae.Kind.String()}
		}
		c.log.Error("token validation could not decide", "err", err)
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "token validation is unavailable"}
	}
	if id.Level != authn.LevelPlatform {
		return errForbidden("a platform-realm token is required; tenant tokens cannot use the admin API", map[string]any{"level": id.Level.String()})
	}
	c.id = &id
	c.log = c.log.With("actor", id.Subject)

	req := decision.Request{Permission: rt.Permission}
	if rt.resourceCheck() {
		t, err := s.Store.Tenant(c.ctx(), c.r.PathValue(rt.Tenant))
		switch {
		case err == nil:
			c.tenant = &t
			req.Resource, req.HasResource = decision.Resource{Group: t.ID}, true
		case errors.Is(err, pgstore.ErrNotFound):
			// Decide against "no tenant" (only unrestricted platform-wide grants reach it), so a
			// tenant-restricted administrator learns nothing about which tenants exist: 403
			// for them, 404 for those who could act on any tenant.
			req.HasResource = true
		default:
			return err
		}
	}
	in, err := s.Store.LoadPlatformUser(c.ctx(), id.Subject)
	if err != nil {
		return err
	}
	now := s.Now()
	set, err := decision.Compile(in, now)
	if err != nil {
		return err
	}
	c.actorIn, c.actorSet = in, set
	d, err := set.Check(now, req)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return errForbidden("permission denied: "+d.Reason.String(), map[string]any{"permission": rt.Permission, "reason": d.Reason.String()})
	}
	if rt.resourceCheck() && c.tenant == nil {
		return errNotFound("tenant " + c.r.PathValue(rt.Tenant) + " does not exist")
	}
	return nil
}
