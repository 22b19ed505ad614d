package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/registry"
)

// Keycloak realms. A tenant created with create_keycloak_realm gets its realm from
// keycloak.Provisioner, which marks it with the tenant's id; the tenant row records that it is
// managed. Only a managed realm that still carries the mark is ever disabled or deleted.
// Keycloak calls cannot share the admin database's transaction: each step is audited after it
// succeeded, and every step is idempotent, so a rerun finishes what a failure interrupted.

// ErrRealmNotConfigured is returned for a realm step asked of an admin without Keycloak
// settings.
var ErrRealmNotConfigured = errors.New("keycloak realm provisioning is not configured on this admin (" + keycloak.EnvURL + ")")

// ErrRealm marks the failure of a step done in Keycloak (the cause is wrapped with it).
var ErrRealm = errors.New("keycloak")

// auditStep appends one audit row in a transaction of its own, for a step done outside the
// admin database (in Keycloak).
func (s *Service) auditStep(ctx context.Context, action string, t Tenant, before, after any) error {
	return pgx.BeginFunc(ctx, s.Admin, func(tx pgx.Tx) error { return appendAudit(ctx, tx, action, t, before, after) })
}

// provisionRealm makes (or finishes) t's realm and, with owner, the owner's user in the realm
// and in the tenant's users with the owner role (conn is the tenant's database).
func (s *Service) provisionRealm(ctx context.Context, conn *pgx.Conn, t Tenant, owner *keycloak.Owner) error {
	if s.Realms == nil {
		return ErrRealmNotConfigured
	}
	res, err := s.Realms.Ensure(ctx, keycloak.TenantRealm{Realm: t.Realm, TenantID: t.ID, DisplayName: t.Name, Owner: owner})
	if err != nil {
		return fmt.Errorf("%w realm %s: %w", ErrRealm, t.Realm, err)
	}
	if owner != nil {
		if err := addOwner(ctx, conn, t, res.OwnerID, owner.Email); err != nil {
			return fmt.Errorf("owner %s: %w", owner.Username, err)
		}
	}
	after := map[string]any{"realm": res.Realm, "client_id": res.ClientID, "audience": res.Audience}
	if owner != nil {
		after["owner"] = map[string]any{"username": owner.Username, "external_id": res.OwnerID, "role": "owner"}
	}
	return s.auditStep(ctx, "tenant.realm_provision", t, nil, after)
}

// addOwner makes the user externalID the tenant's owner (both steps idempotent).
func addOwner(ctx context.Context, conn *pgx.Conn, t Tenant, externalID, email string) error {
	users := pgx.Identifier{t.SchemaName, "users"}.Sanitize()
	roles := pgx.Identifier{t.SchemaName, "roles"}.Sanitize()
	userRoles := pgx.Identifier{t.SchemaName, "user_roles"}.Sanitize()
	var mail *string
	if email != "" {
		mail = &email
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+users+` (external_id, email) VALUES ($1, $2) ON CONFLICT (external_id) DO NOTHING`,
			externalID, mail); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO `+userRoles+` (user_id, role_id)
			SELECT u.id, r.id FROM `+users+` u, `+roles+` r WHERE u.external_id = $1 AND r.code = 'owner'
			ON CONFLICT DO NOTHING`, externalID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var has bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+userRoles+` ur JOIN `+users+` u ON u.id = ur.user_id
				JOIN `+roles+` r ON r.id = ur.role_id WHERE u.external_id = $1 AND r.code = 'owner' AND ur.team_id IS NULL)`,
				externalID).Scan(&has); err != nil {
				return err
			}
			if !has {
				return errors.New("the tenant has no owner role")
			}
		}
		return nil
	})
}

// CheckDelete refuses, before anything is changed, a deletion Delete could not finish.
func (s *Service) CheckDelete(t Tenant, opts DeleteOptions) error {
	switch {
	case !opts.DeleteRealm:
		return nil
	case !opts.Purge:
		return &registry.ValidationError{Field: "delete_realm", Message: "only with purge"}
	case !t.RealmManaged:
		return fmt.Errorf("realm %s of tenant %s was not created by neoauthz; it is left alone: %w", t.Realm, t.Slug, ErrNotOwned)
	case s.Realms == nil:
		return ErrRealmNotConfigured
	}
	return nil
}

func (s *Service) deleteRealm(ctx context.Context, t Tenant) error {
	existed, err := s.Realms.Delete(ctx, t.Realm, t.ID)
	if err != nil {
		return fmt.Errorf("%w realm %s: %w", ErrRealm, t.Realm, err)
	}
	outcome := "deleted"
	if !existed {
		outcome = "already gone"
	}
	return s.auditStep(ctx, "tenant.realm_delete", t, map[string]any{"realm": t.Realm}, map[string]any{"outcome": outcome})
}

// SyncRealmStatus disables t's realm when t is suspended and enables it when t is active, if
// the admin is configured to (NEOAUTHZ_KEYCLOAK_DISABLE_ON_SUSPEND) and neoauthz created the
// realm. The status change is committed first (a suspended tenant is refused by the pdp
// whatever Keycloak does); a failure here is returned, and repeating the suspension or
// activation retries it.
func (s *Service) SyncRealmStatus(ctx context.Context, t Tenant) error {
	if s.Realms == nil || !s.Realms.Settings.DisableOnSuspend || !t.RealmManaged {
		return nil
	}
	var enabled bool
	switch t.Status {
	case StatusSuspended:
	case StatusActive:
		enabled = true
	default:
		return nil
	}
	changed, err := s.Realms.SetEnabled(ctx, t.Realm, t.ID, enabled)
	if err != nil {
		verb := map[bool]string{true: "enable", false: "disable"}[enabled]
		return fmt.Errorf("tenant %s is %s, but its %w realm %s could not be %sd (repeat to retry): %w", t.Slug, t.Status, ErrRealm, t.Realm, verb, err)
	}
	if !changed {
		return nil
	}
	action := map[bool]string{true: "tenant.realm_enable", false: "tenant.realm_disable"}[enabled]
	return s.auditStep(ctx, action, t, map[string]any{"realm": t.Realm, "enabled": !enabled}, map[string]any{"realm": t.Realm, "enabled": enabled})
}
