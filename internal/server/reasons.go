package server

import (
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/neofast/neoauthz/internal/pdp"
	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// outcome is how a transport answers one decision: the proto reason of neoauthz.v1, the HTTP
// status and error-envelope code of ext_authz and forward auth, and the gRPC code ext_authz
// puts in CheckResponse.status.
type outcome struct {
	proto   authzv1.Reason
	http    int
	code    string     // error envelope "code"; "" for an allow
	grpc    codes.Code // ext_authz CheckResponse.status
	message string     // generic, safe to show to the client
}

// reasonOutcomes is THE reason → status table, shared by every transport so that the same
// decision reads the same everywhere. Every deny is 403 except unauthenticated (401): the
// finer reason travels in details.reason and in the neoauthz.v1 Reason, not in the status.
var reasonOutcomes = [...]outcome{
	pdp.ReasonGranted:           {authzv1.Reason_REASON_GRANTED, http.StatusOK, "", codes.OK, "allowed"},
	pdp.ReasonNoPermission:      {authzv1.Reason_REASON_NO_PERMISSION, http.StatusForbidden, "forbidden", codes.PermissionDenied, "permission denied"},
	pdp.ReasonExplicitDeny:      {authzv1.Reason_REASON_EXPLICIT_DENY, http.StatusForbidden, "forbidden", codes.PermissionDenied, "permission denied"},
	pdp.ReasonUserInactive:      {authzv1.Reason_REASON_USER_INACTIVE, http.StatusForbidden, "forbidden", codes.PermissionDenied, "user is not active"},
	pdp.ReasonTenantSuspended:   {authzv1.Reason_REASON_TENANT_SUSPENDED, http.StatusForbidden, "forbidden", codes.PermissionDenied, "tenant is suspended"},
	pdp.ReasonUnknownTenant:     {authzv1.Reason_REASON_UNKNOWN_TENANT, http.StatusForbidden, "forbidden", codes.PermissionDenied, "unknown tenant"},
	pdp.ReasonUnknownUser:       {authzv1.Reason_REASON_UNKNOWN_USER, http.StatusForbidden, "forbidden", codes.PermissionDenied, "unknown user"},
	pdp.ReasonInvalidData:       {authzv1.Reason_REASON_INVALID_DATA, http.StatusForbidden, "forbidden", codes.PermissionDenied, "permission denied"},
	pdp.ReasonUnauthenticated:   {authzv1.Reason_REASON_UNAUTHENTICATED, http.StatusUnauthorized, "unauthenticated", codes.Unauthenticated, "authentication required"},
	pdp.ReasonCrossTenant:       {authzv1.Reason_REASON_CROSS_TENANT, http.StatusForbidden, "forbidden", codes.PermissionDenied, "access to another tenant is denied"},
	pdp.ReasonNotServedInRegion: {authzv1.Reason_REASON_NOT_SERVED_IN_REGION, http.StatusForbidden, "forbidden", codes.PermissionDenied, "tenant is not served in this region"},
}

// Outcomes that are not decisions. badRequest is a request the pdp refuses to evaluate (bad
// path, bad header, invalid permission): ext_authz answers it with a 400 denied response.
// unavailable is "could not decide": ext_authz returns a gRPC error instead (Envoy's
// failure_mode_allow decides), forward auth answers 503.
var (
	badRequestOutcome  = outcome{authzv1.Reason_REASON_UNSPECIFIED, http.StatusBadRequest, "bad_request", codes.InvalidArgument, "bad request"}
	unavailableOutcome = outcome{authzv1.Reason_REASON_UNSPECIFIED, http.StatusServiceUnavailable, "unavailable", codes.Unavailable, "cannot decide now"}
)

// outcomeOf returns the row of r. A reason missing from the table (a pdp newer than this
// file) is a plain deny, never an allow.
func outcomeOf(r pdp.Reason) outcome {
	if int(r) < len(reasonOutcomes) && reasonOutcomes[r].http != 0 {
		return reasonOutcomes[r]
	}
	return outcome{authzv1.Reason_REASON_UNSPECIFIED, http.StatusForbidden, "forbidden", codes.PermissionDenied, "permission denied"}
}
