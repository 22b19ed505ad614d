package adminapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/fleet"
	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/strictjson"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// Pagination limits.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
	// MaxPage bounds page so that (page-1)*page_size can never overflow an OFFSET.
	MaxPage = 1_000_000
	// maxBodyBytes bounds a request body; no admin request needs more.
	maxBodyBytes = 1 << 20
)

// Response headers.
const (
	HeaderRequestID = "X-Request-Id"
	// HeaderConsistency carries the consistency token of a write: the pdp reads data at least
	// that new when a check sends it back (x-neoauthz-consistency, or consistency_token).
	HeaderConsistency = "X-Neoauthz-Consistency"
)

// Error codes of the error envelope; stable, for clients to switch on.
const (
	CodeBadRequest      = "bad_request"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeValidation      = "validation_failed"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
)

// envelope is every response body.
type envelope struct {
	Success bool           `json:"success"`
	Data    any            `json:"data,omitempty"`
	Meta    map[string]any `json:"meta,omitempty"`
	Error   *apiError      `json:"error,omitempty"`
}

// apiError is an error that knows its HTTP status; anything else a handler returns is mapped by
// toAPIError, and what is not recognised there is a 500 whose cause is logged, not sent.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg}
}

func errNotFound(msg string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg}
}

func errConflict(msg string) *apiError {
	return &apiError{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
}

// fieldErrors collects validation failures by field, so one 422 names every offending field.
type fieldErrors map[string]string

func (f fieldErrors) add(field, msg string) { f[field] = msg }

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return f.apiError()
}

// apiError is the 422 for f; err wraps it so an empty f is a nil error, not a typed nil.
func (f fieldErrors) apiError() *apiError {
	return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeValidation,
		Message: "the request has invalid fields", Details: map[string]any{"fields": map[string]string(f)}}
}

func errValidation(field, msg string) *apiError {
	return fieldErrors{field: msg}.apiError()
}

// toAPIError maps the errors of the packages the API builds on to statuses. The message of a
// 500 is generic: the cause goes to the log with the request id.
func toAPIError(err error) (*apiError, bool) {
	var ae *apiError
	var ve *registry.ValidationError
	var pgErr *pgconn.PgError
	var authErr *authn.Error
	switch {
	case errors.As(err, &ae):
		return ae, true
	case errors.As(err, &ve):
		return errValidation(ve.Field, ve.Message), true
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, pgstore.ErrNotFound):
		return errNotFound(err.Error()), true
	case errors.Is(err, registry.ErrConflict), errors.Is(err, tenancy.ErrWrongStatus):
		return errConflict(err.Error()), true
	case errors.Is(err, tenancy.ErrNotOwned), errors.Is(err, keycloak.ErrNotOwned):
		return errConflict(err.Error()), true
	case errors.Is(err, tenancy.ErrRealmNotConfigured):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}, true
	case errors.Is(err, tenancy.ErrRealm):
		// Keycloak failed or refused: the message names the step and what to do (messages built
		// by internal/keycloak carry no credential or token).
		return &apiError{Status: http.StatusBadGateway, Code: CodeUnavailable, Message: err.Error()}, true
	case errors.Is(err, registry.ErrConfiguration):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}, true
	case errors.Is(err, secretbox.ErrNoKey):
		return errValidation("password", "this server has no "+secretbox.EnvKey+": only password-less connections can be registered"), true
	case errors.Is(err, fleet.ErrInvalidScope):
		return errValidation("scope", err.Error()), true
	case errors.As(err, &authErr) && authErr.Kind.Unauthenticated():
		return &apiError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "invalid token: " + authErr.Kind.String()}, true
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "23503": // foreign_key_violation: on delete, something still refers to the row
			return &apiError{Status: http.StatusConflict, Code: CodeConflict,
				Message: "still referenced: remove what refers to it first", Details: map[string]any{"constraint": pgErr.ConstraintName}}, true
		case "23505":
			return &apiError{Status: http.StatusConflict, Code: CodeConflict, Message: "already exists",
				Details: map[string]any{"constraint": pgErr.ConstraintName}}, true
		case "23514", "22P02", "22001", "22007", "22008":
			return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "refused by the database",
				Details: map[string]any{"constraint": pgErr.ConstraintName, "reason": pgErr.Message}}, true
		}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}, false
}

// call is one request as a handler sees it.
type call struct {
	w         http.ResponseWriter
	r         *http.Request
	s         *Server
	route     *route
	id        *authn.Identity // the caller's, set by authorize (nil on public routes)
	tenant    *pgstore.Tenant // the tenant a tenant-scoped route is about, resolved by authorization
	actorIn   decision.Input  // the actor's platform facts, loaded by authorization
	actorSet  *decision.Set   // the actor's compiled platform set (nil on public routes)
	requestID string
	log       *slog.Logger
	written   bool
	// wrote names the versions the call's writes produced (adminWrite, tenantWrite,
	// auditAfter); ok returns it.
	wrote consistency.Token
}

// wroteAdmin records an admin database version a write produced.
func (c *call) wroteAdmin(v int64) { c.merge(consistency.ForAdmin(uint64(v))) }

// wroteTenant records a tenant schema version a write of c.tenant produced.
func (c *call) wroteTenant(v int64) {
	tok, err := consistency.ForTenant(c.tenant.ID, uint64(v))
	if err != nil {
		c.log.Error("consistency token of a tenant write", "err", err)
		return
	}
	c.merge(tok)
}

func (c *call) merge(tok consistency.Token) {
	merged, err := consistency.Merge(c.wrote, tok)
	if err != nil {
		c.log.Error("consistency token of a write", "err", err)
		return
	}
	c.wrote = merged
}

func (c *call) ctx() context.Context { return c.r.Context() }

// actor is what the audit log records as who did it.
func (c *call) actor() string {
	if c.id == nil {
		return "anonymous"
	}
	return c.id.Subject
}

// decode reads a JSON body strictly (strictjson.Unmarshal): a member given twice at any depth,
// a field name that matches only when case is ignored, an unknown field and trailing data are
// a 400, so a typo is not silently ignored and no two readers of a body can see different
// requests. Every handler reads its body here.
func (c *call) decode(v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBodyBytes))
	if err != nil {
		return errBadRequest("invalid JSON body: " + err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errBadRequest("the request body is empty; a JSON object is required")
	}
	if err := strictjson.Unmarshal(body, v); err != nil {
		return errBadRequest("invalid JSON body: " + strings.TrimPrefix(err.Error(), "strictjson: "))
	}
	return nil
}

// page reads page and page_size; out of range is a 422 naming the parameter.
func (c *call) page() (page, size int, err error) {
	q := c.r.URL.Query()
	fe := fieldErrors{}
	page, size = 1, DefaultPageSize
	if v := q.Get("page"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > MaxPage {
			fe.add("page", fmt.Sprintf("must be an integer between 1 and %d", MaxPage))
		}
		page = n
	}
	if v := q.Get("page_size"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > MaxPageSize {
			fe.add("page_size", fmt.Sprintf("must be an integer between 1 and %d", MaxPageSize))
		}
		size = n
	}
	return page, size, fe.err()
}

func pageMeta(page, size, total int) map[string]any {
	pages := (total + size - 1) / size
	return map[string]any{"page": page, "page_size": size, "total": total, "total_pages": pages}
}

// ok writes a success envelope. A write's consistency token goes into meta
// "consistency_token" and the X-Neoauthz-Consistency header, so a caller can ask the pdp for
// read-your-writes without parsing the body. A write that recorded no token but reports an
// admin "version" (a change made through another package, then read back) gets an admin
// token for it.
func (c *call) ok(status int, data any, meta map[string]any) error {
	if meta == nil {
		meta = map[string]any{}
	}
	meta["request_id"] = c.requestID
	if v, ok := meta["version"].(int64); ok && c.wrote.IsZero() && c.r.Method != http.MethodGet {
		c.wroteAdmin(v)
	}
	if tok := c.wrote.String(); tok != "" {
		meta["consistency_token"] = tok
		c.w.Header().Set(HeaderConsistency, tok)
	}
	c.written = true
	writeJSON(c.w, status, envelope{Success: true, Data: data, Meta: meta})
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="neoauthz-admin"`)
	}
	writeJSON(w, e.Status, envelope{Success: false, Error: e, Meta: map[string]any{"request_id": requestID}})
}

// requestID takes the caller's X-Request-Id when it is short and printable (it goes into logs
// and the audit log), else makes one.
func requestID(r *http.Request) string {
	if v := r.Header.Get(HeaderRequestID); v != "" && len(v) <= 128 && printable(v) {
		return v
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}
