package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/consistency"
	"github.com/neofast/neoauthz/internal/decision"
	"github.com/neofast/neoauthz/internal/pdp"
)

// fakeDecider is a deterministic Decider for transport tests. Tokens:
//
//	alice-token   tenant acme (id t-acme), user alice
//	bob-token     tenant globex (id t-globex), user bob
//	root-token    platform user root
//	expired       authn.ErrExpired (unauthenticated)
//	idp-down      authn.ErrUnavailable inside pdp.ErrUnauthenticated (could not decide)
//	db-down       pdp.ErrUnavailable (could not decide)
//
// Consistency tokens: an admin part above fakeCurrentVersion names data that does not exist
// (pdp.ErrInvalidRequest from Await); fakeVersionDown fails with pdp.ErrUnavailable. Every
// answer's token is the request's merged with the fake's own data version (7).
//
// Permissions are granted per user in grants; "*.deny" codes in denies are explicit denies.
// Permissions "fail.unavailable*" fail with pdp.ErrUnavailable, "fail.internal*" with a plain
// error; requests the pdp finds invalid (pdp.ValidateRequest) fail with pdp.ErrInvalidRequest;
// "slow.op.tenant" blocks until release is closed.
type fakeDecider struct {
	ready   atomic.Bool
	grants  map[string][]string // user → codes or "resource.action" (resource checks)
	denies  map[string][]string
	release chan struct{}
	started chan struct{} // receives when a "slow.op.tenant" check begins

	mu        sync.Mutex
	last      pdp.Request
	lastSub   pdp.Subject
	lastAwait consistency.Token
	calls     int
	seq       atomic.Uint64
}

const (
	fakeCurrentVersion = 1000
	fakeVersionDown    = 999
)

func (f *fakeDecider) Await(_ context.Context, tok consistency.Token) error {
	f.mu.Lock()
	f.lastAwait = tok
	f.mu.Unlock()
	switch {
	case tok.Admin == fakeVersionDown:
		return fmt.Errorf("%w: admin database down", pdp.ErrUnavailable)
	case tok.Admin > fakeCurrentVersion:
		return fmt.Errorf("%w: version %d does not exist", pdp.ErrInvalidRequest, tok.Admin)
	}
	return nil
}

// used is the token of the data the fake decides from.
func used(at consistency.Token) consistency.Token {
	tok, _ := consistency.Merge(at, consistency.ForAdmin(7))
	return tok
}

func newFake() *fakeDecider {
	f := &fakeDecider{
		grants: map[string][]string{
			"alice": {"users.read.tenant", "reports.read.tenant", "projects.read", "projects.update", "files.read.tenant", "slow.op.tenant"},
			"bob":   {"users.read.tenant"},
			"root":  {"tenants.read", "reports.read.tenant"},
		},
		denies:  map[string][]string{"alice": {"users.delete.tenant"}},
		release: make(chan struct{}),
		started: make(chan struct{}, 1),
	}
	f.ready.Store(true)
	return f
}

var (
	subAlice = pdp.Subject{Level: authn.LevelTenant, TenantID: "t-acme", TenantSlug: "acme", UserID: "alice"}
	subBob   = pdp.Subject{Level: authn.LevelTenant, TenantID: "t-globex", TenantSlug: "globex", UserID: "bob"}
	subRoot  = pdp.Subject{Level: authn.LevelPlatform, UserID: "root"}
)

func (f *fakeDecider) SubjectFromToken(_ context.Context, token string) (pdp.Subject, error) {
	switch token {
	case "alice-token", longToken:
		return subAlice, nil
	case "bob-token":
		return subBob, nil
	case "root-token":
		return subRoot, nil
	case "expired":
		return pdp.Subject{}, fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrExpired)
	case "idp-down":
		return pdp.Subject{}, fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrUnavailable)
	case "db-down":
		return pdp.Subject{}, fmt.Errorf("%w: realm lookup", pdp.ErrUnavailable)
	default:
		return pdp.Subject{}, fmt.Errorf("%w: %w", pdp.ErrUnauthenticated, authn.ErrBadSignature)
	}
}

func (f *fakeDecider) SubjectFromPrincipal(_ context.Context, tenant, user string) (pdp.Subject, error) {
	switch {
	case (tenant == "acme" || tenant == "t-acme") && user == "alice":
		return subAlice, nil
	case tenant == "" && user == "root":
		return subRoot, nil
	}
	return pdp.Subject{}, fmt.Errorf("%w: unknown principal", pdp.ErrUnauthenticated)
}

func (f *fakeDecider) Check(ctx context.Context, sub pdp.Subject, req pdp.Request) (pdp.Result, error) {
	f.mu.Lock()
	f.last, f.lastSub = req, sub
	f.calls++
	f.mu.Unlock()
	return f.decide(ctx, sub, req)
}

func (f *fakeDecider) decide(ctx context.Context, sub pdp.Subject, req pdp.Request) (pdp.Result, error) {
	switch {
	case strings.HasPrefix(req.Permission, "fail.unavailable"):
		return pdp.Result{}, fmt.Errorf("%w: tenant database down", pdp.ErrUnavailable)
	case strings.HasPrefix(req.Permission, "fail.internal"):
		return pdp.Result{}, errors.New("bug")
	}
	if err := pdp.ValidateRequest(sub, req); err != nil {
		return pdp.Result{}, err
	}
	if req.Permission == "slow.op.tenant" {
		select {
		case f.started <- struct{}{}:
		default:
		}
		select {
		case <-f.release:
		case <-ctx.Done():
			return pdp.Result{}, ctx.Err()
		}
	}
	res := pdp.Result{Version: 7, Token: used(req.Consistency), DecisionID: fmt.Sprintf("d-%d", f.seq.Add(1))}
	if req.BoundTenant != "" && sub.Level == authn.LevelTenant && req.BoundTenant != sub.TenantID && req.BoundTenant != sub.TenantSlug {
		res.Reason = pdp.ReasonCrossTenant
		return res, nil
	}
	for _, d := range f.denies[sub.UserID] {
		if d == req.Permission {
			res.Reason = pdp.ReasonExplicitDeny
			return res, nil
		}
	}
	for _, g := range f.grants[sub.UserID] {
		if g == req.Permission {
			res.Allowed, res.Reason = true, pdp.ReasonGranted
			res.Grant = decision.Grant{Code: g, Role: "member"}
			return res, nil
		}
	}
	res.Reason = pdp.ReasonNoPermission
	return res, nil
}

func (f *fakeDecider) CheckBulk(ctx context.Context, sub pdp.Subject, reqs []pdp.Request) ([]pdp.Result, error) {
	out := make([]pdp.Result, len(reqs))
	for i, r := range reqs {
		res, err := f.decide(ctx, sub, r)
		if err != nil {
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}

func (f *fakeDecider) ListPermissions(_ context.Context, sub pdp.Subject, at consistency.Token) ([]string, consistency.Token, error) {
	return append([]string(nil), f.grants[sub.UserID]...), used(at), nil
}

func (f *fakeDecider) Ready(context.Context) error {
	if f.ready.Load() {
		return nil
	}
	return errors.New("admin database unreachable")
}

func (f *fakeDecider) Health(context.Context) map[string]pdp.DependencyHealth {
	pg := pdp.DependencyHealth{Status: "ok", Latency: 1500 * time.Microsecond}
	if !f.ready.Load() {
		pg = pdp.DependencyHealth{Status: "down", Error: "connection refused"}
	}
	return map[string]pdp.DependencyHealth{
		"postgres": pg,
		"redis":    {Status: "degraded", Latency: 3 * time.Millisecond, Error: "timeout"},
	}
}

func (f *fakeDecider) lastRequest() (pdp.Request, pdp.Subject, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.lastSub, f.calls
}
