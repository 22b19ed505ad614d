package authn_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		sentinel error
		kind     authn.Kind
		reason   string
		unauth   bool
	}{
		{authn.ErrMalformed, authn.KindMalformed, "malformed", true},
		{authn.ErrTooLarge, authn.KindTooLarge, "too_large", true},
		{authn.ErrBadSignature, authn.KindBadSignature, "bad_signature", true},
		{authn.ErrExpired, authn.KindExpired, "expired", true},
		{authn.ErrNotYetValid, authn.KindNotYetValid, "not_yet_valid", true},
		{authn.ErrUnknownIssuer, authn.KindUnknownIssuer, "unknown_issuer", true},
		{authn.ErrUnknownRealm, authn.KindUnknownRealm, "unknown_realm", true},
		{authn.ErrTenantNotActive, authn.KindTenantNotActive, "tenant_not_active", true},
		{authn.ErrWrongAudience, authn.KindWrongAudience, "wrong_audience", true},
		{authn.ErrWrongTokenType, authn.KindWrongTokenType, "wrong_token_type", true},
		{authn.ErrUnknownKey, authn.KindUnknownKey, "unknown_key", true},
		{authn.ErrAlgorithmNotAllowed, authn.KindAlgorithmNotAllowed, "algorithm_not_allowed", true},
		{authn.ErrMissingClaim, authn.KindMissingClaim, "missing_claim", true},
		{authn.ErrUnavailable, authn.KindUnavailable, "unavailable", false},
	}
	for _, tc := range tests {
		t.Run(tc.reason, func(t *testing.T) {
			wrapped := fmt.Errorf("checking request: %w", tc.sentinel)
			require.ErrorIs(t, wrapped, tc.sentinel)
			assert.Equal(t, tc.kind, authn.KindOf(wrapped), "got kind %v, want %v", authn.KindOf(wrapped), tc.kind)
			assert.Equal(t, tc.reason, authn.Reason(wrapped), "got reason %q, want %q", authn.Reason(wrapped), tc.reason)
			assert.Equal(t, tc.unauth, tc.kind.Unauthenticated())
			for _, other := range tests {
				if other.kind != tc.kind {
					assert.NotErrorIs(t, wrapped, other.sentinel)
				}
			}
		})
	}
	assert.Equal(t, "ok", authn.Reason(nil))
	assert.Equal(t, "internal", authn.Reason(errors.New("boom")))
	assert.Equal(t, "tenant", authn.LevelTenant.String())
	assert.Equal(t, "platform", authn.LevelPlatform.String())
}
