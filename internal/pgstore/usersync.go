package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// UserProfile is what a verified token says about its bearer, the only input of user sync.
// Email and Username are "" when the token does not carry them (or they were not valid).
type UserProfile struct {
	ExternalID, Email, Username string
}

// SyncOutcome is what sync_user did (see migrations/tenant/V4__user_sync.sql).
type SyncOutcome string

// Outcomes of SyncTenantUser.
const (
	SyncDisabled  SyncOutcome = "disabled"
	SyncCreated   SyncOutcome = "created"
	SyncUnchanged SyncOutcome = "unchanged"
	SyncDeferred  SyncOutcome = "deferred"
	SyncUpdated   SyncOutcome = "updated"
)

// SyncTenantUser calls the tenant schema's sync_user function: it creates the user with the
// tenant's default roles when sync is on and the user is new, or updates the profile when it
// changed and the row is older than profileInterval. It is the Store's only write, in a
// transaction opened READ WRITE explicitly (the pdp's sessions default to read-only) on the
// tenant's primary; the function runs with its owner's rights, so the pdp's role needs only
// EXECUTE on it. The returned version is the schema's after the call.
func (s *Store) SyncTenantUser(ctx context.Context, t Tenant, p UserProfile, profileInterval time.Duration) (SyncOutcome, uint64, error) {
	if _, err := s.queries(t.SchemaName); err != nil {
		return "", 0, err
	}
	pool, err := s.Pool(ctx, t.ConnectionID, t.Database)
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := s.timeout(ctx, "sync_tenant_user")
	defer cancel()
	var outcome string
	var version int64
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT outcome, version FROM `+pgx.Identifier{t.SchemaName, "sync_user"}.Sanitize()+
			`($1, nullif($2, ''), nullif($3, ''), make_interval(secs => $4))`,
			p.ExternalID, p.Email, p.Username, profileInterval.Seconds()).Scan(&outcome, &version)
	})
	if err != nil {
		return "", 0, fmt.Errorf("pgstore: sync user of tenant %s: %w", t.ID, err)
	}
	return SyncOutcome(outcome), uint64(version), nil
}
