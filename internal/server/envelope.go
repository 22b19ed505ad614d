package server

import (
	"encoding/json"
	"strings"
)

// envelope is the JSON body of every HTTP answer: {"success", "data"} or
// {"success": false, "error": {"code", "message", "details"}}.
type envelope struct {
	Success bool      `json:"success"`
	Data    any       `json:"data,omitempty"`
	Error   *envError `json:"error,omitempty"`
}

type envError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Details envDetails `json:"details"`
}

type envDetails struct {
	Reason     string `json:"reason"`
	AuthnError string `json:"authn_error,omitempty"` // why the credential was refused ("expired", ...)
	// Detail refines the reason (pdp.Result.Detail), e.g. "user sync rate limited".
	Detail     string `json:"detail,omitempty"`
	DecisionID string `json:"decision_id"`
}

// allowData is the data of an allowed forward-auth answer.
type allowData struct {
	Allowed    bool   `json:"allowed"`
	Public     bool   `json:"public,omitempty"`
	DecisionID string `json:"decision_id"`
	Tenant     string `json:"tenant,omitempty"`
	User       string `json:"user,omitempty"`
	Version    uint64 `json:"version,omitempty"`
	// ConsistencyToken names the data the decision used.
	ConsistencyToken string `json:"consistency_token,omitempty"`
}

// errorBody is the error envelope of a gate result that is not an allow.
func errorBody(g *gateResult) []byte {
	b, err := json.Marshal(envelope{Error: &envError{
		Code:    g.out.code,
		Message: g.message,
		Details: envDetails{Reason: g.rec.reason, AuthnError: g.rec.authn, Detail: g.res.Detail, DecisionID: g.rec.decisionID},
	}})
	if err != nil { // cannot happen: strings only
		return []byte(`{"success":false}`)
	}
	return b
}

func allowBody(g *gateResult) []byte {
	d := allowData{Allowed: true, Public: g.kind == gatePublic, DecisionID: g.rec.decisionID}
	if g.kind == gateAllow {
		d.Tenant, d.User, d.Version, d.ConsistencyToken = g.sub.TenantSlug, g.sub.UserID, g.res.Version, g.res.TokenString()
	}
	b, err := json.Marshal(envelope{Success: true, Data: d})
	if err != nil {
		return []byte(`{"success":true}`)
	}
	return b
}

// wwwAuthenticate is the challenge of a 401 (RFC 6750 §3). Without any bearer credential it
// carries no error code, as the RFC asks; for a refused token it says invalid_token and the
// failure kind ("expired", "bad_signature"), never anything from the token itself.
func wwwAuthenticate(authnLabel string) string {
	if authnLabel == "" || authnLabel == reasonMissingToken {
		return `Bearer realm="neoauthz"`
	}
	return `Bearer realm="neoauthz", error="invalid_token", error_description="` + quoteSafe(authnLabel) + `"`
}

// quoteSafe keeps a label inside a quoted-string: labels are snake_case already, this only
// guards against a future label with a quote or backslash.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
