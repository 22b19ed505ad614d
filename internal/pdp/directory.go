package pdp

import (
	"context"
	"errors"
	"fmt"

	"github.com/neofast/neoauthz/internal/pgstore"
)

// userDirectory is the store access behind UserByEmail, SubjectCandidates and Teams
// (*pgstore.Store provides it).
type userDirectory interface {
	TenantUserByEmail(ctx context.Context, t pgstore.Tenant, email string) (string, bool, error)
	TenantSubjectCandidates(ctx context.Context, t pgstore.Tenant, resource, action, after string, limit int) ([]string, error)
	TenantTeams(ctx context.Context, t pgstore.Tenant, after string, limit int) ([]string, error)
}

var errNoDirectory = errors.New("pdp: the store cannot look users up")

// directory returns the active tenant idOrSlug and the store's user directory; found is
// false for a tenant that is unknown or not active (it has no users to name). A tenant of a
// region this pdp does not serve is ErrNotServedInRegion: its users are not read here.
func (s *Service) directory(ctx context.Context, idOrSlug string) (pgstore.Tenant, userDirectory, bool, error) {
	dir, ok := s.store.(userDirectory)
	if !ok {
		return pgstore.Tenant{}, nil, false, errNoDirectory
	}
	t, found, err := s.tenantAt(ctx, idOrSlug, 0, s.now())
	if err != nil || !found {
		return t, dir, false, err
	}
	if !t.ServedBy(s.cfg.Regions) {
		return t, dir, false, ErrNotServedInRegion
	}
	return t, dir, t.Status == "active", nil
}

// UserByEmail returns the external id of the one user of the tenant whose email is email. It
// reads PostgreSQL every time: nothing about it is cached, so it is never stale.
func (s *Service) UserByEmail(ctx context.Context, tenant, email string) (string, bool, error) {
	t, dir, ok, err := s.directory(ctx, tenant)
	if err != nil || !ok {
		return "", false, err
	}
	id, found, err := dir.TenantUserByEmail(ctx, t, email)
	if err != nil {
		return "", false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return id, found, nil
}

// SubjectCandidates returns a page of the tenant's users who may hold resource.action (see
// pgstore.Store.TenantSubjectCandidates); the caller decides each with Check.
func (s *Service) SubjectCandidates(ctx context.Context, tenant, resource, action, after string, limit int) ([]string, error) {
	t, dir, ok, err := s.directory(ctx, tenant)
	if err != nil || !ok {
		return nil, err
	}
	ids, err := dir.TenantSubjectCandidates(ctx, t, resource, action, after, limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ids, nil
}

// Teams returns a page of the tenant's team ids (see pgstore.Store.TenantTeams).
func (s *Service) Teams(ctx context.Context, tenant, after string, limit int) ([]string, error) {
	t, dir, ok, err := s.directory(ctx, tenant)
	if err != nil || !ok {
		return nil, err
	}
	ids, err := dir.TenantTeams(ctx, t, after, limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ids, nil
}
