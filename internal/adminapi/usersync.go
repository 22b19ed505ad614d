package adminapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/strictjson"
)

// UserSyncSettings is a tenant's settings.user_sync: whether the pdp creates the user of a
// valid token whose sub has no row yet (just-in-time sync, off by default), and the roles such
// a user gets (none by default). The pdp reads enabled from the tenant directory; the tenant
// schema's sync_user function, which does the write, reads both from the copy the API keeps
// in the schema's settings table (key user_sync), so the pdp can neither turn sync on nor
// choose the roles.
type UserSyncSettings struct {
	Enabled      bool     `json:"enabled"`
	DefaultRoles []string `json:"default_roles"`
}

// maxDefaultRoles bounds settings.user_sync.default_roles.
const maxDefaultRoles = 20

// roleCodeRe is platform.valid_code: a tenant role code.
var roleCodeRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// userSyncKey is the key of user sync in a tenant's settings, in the admin database and in
// the tenant schema's settings table.
const userSyncKey = "user_sync"

// parseUserSync validates settings.user_sync: an object with a boolean enabled and an optional
// list of role codes (each once, at most maxDefaultRoles), nothing else.
func parseUserSync(raw any) (UserSyncSettings, error) {
	b, err := json.Marshal(raw)
	if err != nil || !bytes.HasPrefix(b, []byte("{")) {
		return UserSyncSettings{}, errValidation("settings.user_sync", `must be an object {"enabled": bool, "default_roles": [role codes]}`)
	}
	var us struct {
		Enabled      *bool    `json:"enabled"`
		DefaultRoles []string `json:"default_roles"`
	}
	if err := strictjson.Unmarshal(b, &us); err != nil {
		return UserSyncSettings{}, errValidation("settings.user_sync", "must hold only enabled (boolean) and default_roles (list of role codes): "+
			strings.TrimPrefix(err.Error(), "strictjson: "))
	}
	if us.Enabled == nil {
		return UserSyncSettings{}, errValidation("settings.user_sync.enabled", "is required (true or false)")
	}
	if len(us.DefaultRoles) > maxDefaultRoles {
		return UserSyncSettings{}, errValidation("settings.user_sync.default_roles", fmt.Sprintf("at most %d roles", maxDefaultRoles))
	}
	seen := map[string]bool{}
	for _, r := range us.DefaultRoles {
		if !roleCodeRe.MatchString(r) {
			return UserSyncSettings{}, errValidation("settings.user_sync.default_roles", "each must be a role code (^[a-z][a-z0-9_-]{0,62}$)")
		}
		if seen[r] {
			return UserSyncSettings{}, errValidation("settings.user_sync.default_roles", "lists "+r+" twice")
		}
		seen[r] = true
	}
	if us.DefaultRoles == nil {
		us.DefaultRoles = []string{}
	}
	return UserSyncSettings{Enabled: *us.Enabled, DefaultRoles: us.DefaultRoles}, nil
}

// writeUserSync stores user sync in the tenant schema's settings table, where sync_user reads
// it, after checking that every default role exists and is active there; us == nil removes
// it (sync off). It runs before the admin database's settings change commits: should that
// fail, the schema may say "on" while the pdp (which reads the admin copy) never asks, and a
// later PATCH writes both again; turning sync off is effective here first.
//
// Default roles are conferred on every user a token creates, so setting them is guarded as
// assigning them is: the actor must hold, at the tenant, every code they confer.
func (s *Server) writeUserSync(c *call, us *UserSyncSettings) error {
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(c.ctx(), db.pool, func(tx pgx.Tx) error {
		if us == nil {
			_, err := tx.Exec(c.ctx(), `DELETE FROM `+db.table("settings")+` WHERE key = $1`, userSyncKey)
			return err
		}
		var missing []string
		err := tx.QueryRow(c.ctx(), `SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM unnest($1::text[]) c
			WHERE NOT EXISTS (SELECT 1 FROM `+db.table("roles")+` r WHERE r.code = c AND r.is_active)`, us.DefaultRoles).Scan(&missing)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return errValidation("settings.user_sync.default_roles", "not an active role of the tenant: "+strings.Join(missing, ", "))
		}
		conferred, err := roleClosureCodes(c.ctx(), tx, lv.rt, us.DefaultRoles)
		if err != nil {
			return err
		}
		if err := s.guard(c, tx, lv, nil, conferred, msgCannotGrant); err != nil {
			return err
		}
		v, err := json.Marshal(us)
		if err != nil {
			return err
		}
		_, err = tx.Exec(c.ctx(), `INSERT INTO `+db.table("settings")+` (key, value) VALUES ($1, $2::jsonb)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`, userSyncKey, v)
		return err
	})
}

// patchUserSync validates settings.user_sync of a PATCH, puts its canonical form back into
// settings, and writes (or, when absent, removes) the tenant schema's copy. A tenant not yet
// placed (provisioning) has no schema: user sync can be set once it is active.
func (s *Server) patchUserSync(c *call, settings map[string]any) error {
	raw, ok := settings[userSyncKey]
	if !ok {
		if c.tenant.Status == "provisioning" || c.tenant.Status == "deleted" {
			return nil
		}
		return s.writeUserSync(c, nil)
	}
	us, err := parseUserSync(raw)
	if err != nil {
		return err
	}
	settings[userSyncKey] = us
	return s.writeUserSync(c, &us)
}
