package adminapi

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/neofast/neoauthz/internal/decision"
)

// No-escalation guard.
//
// Whoever may call a platform RBAC write route (platform_users.write.platform,
// platform_roles.create/update.platform) could otherwise hand out anything, system_admin and
// *.*.* included, to anyone, itself too. So an RBAC write may only confer permissions the
// actor holds itself. One guard serves both levels (level): at platform level the actor's
// platform facts, at tenant level those of the tenant user with the actor's sub (or everything,
// for an actor holding rbac.write.platform unrestricted); the group of a restriction is a
// tenant at platform level and a team at tenant level. Moving a tenant team under another
// confers the grants restricted to its new ancestors (guardTeamMove).
//
//   - What a write confers: assigning a role confers every code of the role and of the active
//     roles it inherits, recursively (an inactive inherited role stops the walk; cycles end
//     because each role is visited once). The assigned role's own codes count even while it is
//     inactive, since it can be reactivated. A direct grant (granted: true) confers its code. A
//     role POST or PATCH confers the codes added to the role plus those of the roles it newly
//     inherits (walked as for an assignment). Re-activating a user confers everything the
//     user holds; removing a deny confers the code it blocked (and nobody removes a deny placed
//     on themselves); adding a code to the catalog confers it through every wildcard grant
//     matching it. Placing a deny confers nothing.
//   - Acting on a user (suspending or deactivating, deleting, revoking a role or a grant) is
//     refused when the user holds anything the actor could not confer (guardActOn).
//   - A conferred wildcard code must be contained in a pattern the actor holds: holding every
//     concrete code it matches today is not enough, since codes added later match it too.
//   - Each conferred code, wildcards included, is expanded against the concrete codes of the
//     platform catalog: a catalog code matches when each of its segments equals the conferred
//     one's or the conferred segment is '*'.
//   - Unrestricted conferral (no tenant): the actor must pass the code check of every expanded
//     code, counting only its unrestricted grants. A grant restricted to a tenant passes a code
//     check at the middle rank (docs/semantics.md), but it must not let its holder confer the
//     code platform-wide.
//   - Conferral restricted to a tenant T (an assignment or direct grant with a tenant): the actor
//     must pass the resource check "resource.action" on tenant T for every expanded code, i.e. be
//     able to do it on T itself.
//
// A refusal is a 403 "cannot grant permissions you do not hold" listing up to 20 of the missing
// codes, decided inside the write's transaction before anything is written, so neither the
// change nor its audit row exists. `admin bootstrap` has no actor and does not come here.

// maxMissingListed bounds the codes a refusal lists.
const maxMissingListed = 20

// roleClosureCodes returns the codes of the roles named (id or code) and of the active roles they
// inherit, recursively, in rt's level; UNION visits each role once, so an inheritance cycle
// terminates.
func roleClosureCodes(ctx context.Context, q querier, rt roleTables, refs []string) ([]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	var codes []string
	err := q.QueryRow(ctx, `WITH RECURSIVE up(id) AS (
			SELECT id FROM `+rt.roles+` WHERE id::text = ANY ($1::text[]) OR code = ANY ($1::text[])
			UNION
			SELECT ri.inherited_role_id FROM `+rt.inherits+` ri
			JOIN up ON ri.role_id = up.id
			JOIN `+rt.roles+` r ON r.id = ri.inherited_role_id AND r.is_active
		) SELECT coalesce(array_agg(DISTINCT p.code ORDER BY p.code), '{}')
		FROM up JOIN `+rt.rolePermissions+` rp ON rp.role_id = up.id
		JOIN `+rt.permissions+` p ON p.id = rp.permission_id`, refs).Scan(&codes)
	return codes, err
}

// added returns the elements of next that are not in prev.
func added(prev, next []string) []string {
	var out []string
	for _, x := range next {
		if !slices.Contains(prev, x) {
			out = append(out, x)
		}
	}
	return out
}

// expandCodes expands conferred codes (segments may be '*') to the catalog's concrete codes they
// match, sorted and without duplicates. A conferred code matching nothing in the catalog confers
// nothing (the write itself refuses a code outside the catalog).
func expandCodes(conferred, catalog []string) []string {
	var out []string
	for _, c := range conferred {
		ps := strings.Split(c, ".")
		for _, k := range catalog {
			if segmentsMatch(ps, strings.Split(k, ".")) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func segmentsMatch(pattern, code []string) bool {
	if len(pattern) != len(code) {
		return false
	}
	for i := range pattern {
		if pattern[i] != "*" && pattern[i] != code[i] {
			return false
		}
	}
	return true
}

// unrestrictedSet compiles the actor's platform set from its unrestricted grants only (every
// deny is kept), for the code checks of an unrestricted conferral.
func unrestrictedSet(in decision.Input, now func() time.Time) (*decision.Set, error) {
	in.Assignments = slices.DeleteFunc(slices.Clone(in.Assignments), func(a decision.Assignment) bool { return a.Group != "" })
	in.Direct = slices.DeleteFunc(slices.Clone(in.Direct), func(d decision.DirectPermission) bool { return d.Granted && d.Group != "" })
	return decision.Compile(in, now())
}

// Refusal messages of the guard.
const (
	msgCannotGrant = "cannot grant permissions you do not hold"
	msgCannotActOn = "cannot act on a user who holds permissions you do not hold"
)

// level is what the guard needs to know of the actor at one level: that level's tables and
// the actor's facts there. all is set for an actor who holds everything at the level.
type level struct {
	rt  roleTables
	in  decision.Input
	all bool
}

// platformLevel is the actor at platform level: its platform facts, loaded by authorization.
func (c *call) platformLevel() level { return level{rt: platformRoleTables, in: c.actorIn} }

// tenantLevel is the actor at the tenant of the call: an actor holding rbac.write.platform
// through an unrestricted grant manages every tenant's RBAC (and could make itself any
// tenant's owner), so it holds everything there; any other actor holds what the tenant user
// with its external id (the token's sub) holds in that tenant, which may be nothing.
func (s *Server) tenantLevel(c *call, db tenantDB) (level, error) {
	lv := level{rt: db.roleTables()}
	if c.actorSet == nil {
		return lv, nil
	}
	wide, err := unrestrictedSet(c.actorIn, s.Now)
	if err != nil {
		return lv, err
	}
	if d, err := wide.Check(s.Now(), decision.Request{Permission: "rbac.write.platform"}); err == nil && d.Allowed {
		lv.all = true
		return lv, nil
	}
	lv.in, err = s.Store.LoadTenantUser(c.ctx(), *c.tenant, c.id.Subject)
	return lv, err
}

// tenantDBLevel returns the call's tenant database and the actor's level there, for a tenant
// RBAC write.
func (s *Server) tenantDBLevel(c *call) (tenantDB, level, error) {
	db, err := s.tenantDB(c)
	if err != nil {
		return db, level{}, err
	}
	lv, err := s.tenantLevel(c, db)
	return db, lv, err
}

// guardConferral refuses (403) a platform write conferring codes the actor does not hold:
// unrestricted when tenant is nil (code checks), else restricted to that tenant id (resource
// checks on it). It must run before the write, inside its transaction.
func (s *Server) guardConferral(c *call, q querier, tenant *string, conferred []string) error {
	return s.guard(c, q, c.platformLevel(), tenant, conferred, msgCannotGrant)
}

// guard is the one no-escalation check, for both levels: every code of conferred, wildcards
// expanded against lv's catalog, must pass the actor's check (see above), and every wildcard
// code must be contained in a pattern the actor holds, since codes added to the catalog later
// would match it too. group restricts the conferral to a tenant (platform) or a team (tenant);
// msg says what the refused write would have done.
func (s *Server) guard(c *call, q querier, lv level, group *string, conferred []string, msg string) error {
	if len(conferred) == 0 || lv.all {
		return nil
	}
	if c.actorSet == nil {
		return errForbidden(msg, map[string]any{"reason": "no authenticated actor"})
	}
	// The catalog's concrete codes, as pgstore reads them, but through the write's transaction:
	// same snapshot, and no second connection while the transaction holds one.
	var catalog []string
	if err := q.QueryRow(c.ctx(), `SELECT coalesce(array_agg(code ORDER BY code COLLATE "C"), '{}')
		FROM `+lv.rt.permissions+` WHERE NOT is_wildcard`).Scan(&catalog); err != nil {
		return err
	}
	var set *decision.Set
	var err error
	if group == nil {
		set, err = unrestrictedSet(lv.in, s.Now)
	} else {
		set, err = decision.Compile(lv.in, s.Now())
	}
	if err != nil {
		return err
	}
	now := s.Now()
	var missing []string
	held := heldPatterns(lv.in, group, now)
	for _, code := range conferred {
		if strings.Contains(code, "*") && !slices.ContainsFunc(held, func(p string) bool { return contains(p, code) }) {
			missing = append(missing, code)
		}
	}
	for _, code := range expandCodes(conferred, catalog) {
		req := decision.Request{Permission: code}
		if group != nil {
			r, rest, _ := strings.Cut(code, ".")
			a, _, _ := strings.Cut(rest, ".")
			req = decision.Request{Permission: r + "." + a, Resource: decision.Resource{Group: *group}, HasResource: true}
		}
		// A check that cannot be decided (a malformed catalog code) counts as missing: fail closed.
		if d, err := set.Check(now, req); err != nil || !d.Allowed {
			missing = append(missing, code)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	details := map[string]any{"missing": missing[:min(len(missing), maxMissingListed)], "missing_count": len(missing)}
	if group != nil {
		details["group"] = *group
		if lv.rt.group == "tenant_id" {
			details["tenant_id"] = *group
		}
	}
	return errForbidden(msg, details)
}

// contains reports whether pattern p covers every code q covers: segment by segment, p's is
// '*' or equal to q's.
func contains(p, q string) bool {
	return segmentsMatch(strings.Split(p, "."), strings.Split(q, "."))
}

// heldPatterns returns the codes (wildcards included) the actor's valid grants carry that
// count for a conferral: unrestricted ones, plus for a conferral restricted to a group those
// restricted to it. Roles are walked as the engine walks them (active roles, each once).
func heldPatterns(in decision.Input, restricted *string, now time.Time) []string {
	if !in.UserKnown || in.UserStatus != "active" {
		return nil
	}
	counts := func(group string, expires time.Time) bool {
		return (group == "" || restricted != nil && group == *restricted) && (expires.IsZero() || now.Before(expires))
	}
	roles := make(map[string]decision.Role, len(in.Roles))
	for _, r := range in.Roles {
		roles[r.ID] = r
	}
	var out []string
	seen := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		r, ok := roles[id]
		if !ok || !r.Active || seen[id] {
			return
		}
		seen[id] = true
		out = append(out, r.Permissions...)
		for _, i := range r.Inherits {
			walk(i)
		}
	}
	for _, a := range in.Assignments {
		if counts(a.Group, a.ExpiresAt) {
			walk(a.RoleID)
		}
	}
	for _, d := range in.Direct {
		if d.Granted && counts(d.Group, d.ExpiresAt) {
			out = append(out, d.Code)
		}
	}
	return out
}

// guardActOn refuses (403) suspending, deleting or revoking from the user userID (of lv's
// level) when the user holds anything the actor could not grant: acting on someone is limited
// to those who hold no more than the actor. Re-activating the user confers all it holds, and
// is guarded the same way with msgCannotGrant.
func (s *Server) guardActOn(c *call, q querier, lv level, userID, msg string) error {
	if lv.all {
		return nil
	}
	held, err := userHoldings(c.ctx(), q, lv.rt, userID)
	if err != nil {
		return err
	}
	for _, h := range held {
		if err := s.guard(c, q, lv, h.group, h.codes, msg); err != nil {
			return err
		}
	}
	return nil
}

// holding is what a user holds under one restriction (nil: unrestricted).
type holding struct {
	group *string
	codes []string
}

// userHoldings returns the codes of a user's valid role assignments (with their inheritance
// closures) and direct grants, grouped by restriction.
func userHoldings(ctx context.Context, q querier, rt roleTables, userID string) ([]holding, error) {
	var groups, roles, codes []string
	err := q.QueryRow(ctx, `WITH items AS (
			SELECT coalesce(`+rt.group+`::text, '') AS g, role_id::text AS role, '' AS code
			FROM `+rt.userRoles+` WHERE user_id = $1::uuid AND (expires_at IS NULL OR expires_at > now())
			UNION ALL
			SELECT coalesce(up.`+rt.group+`::text, ''), '', p.code
			FROM `+rt.userPermissions+` up JOIN `+rt.permissions+` p ON p.id = up.permission_id
			WHERE up.user_id = $1::uuid AND up.is_granted AND (up.expires_at IS NULL OR up.expires_at > now())
		) SELECT coalesce(array_agg(g ORDER BY g), '{}'), coalesce(array_agg(role ORDER BY g), '{}'),
			coalesce(array_agg(code ORDER BY g), '{}') FROM items`, userID).Scan(&groups, &roles, &codes)
	if err != nil {
		return nil, err
	}
	var out []holding
	for i := 0; i < len(groups); {
		j := i
		var refs []string
		h := holding{}
		if groups[i] != "" {
			h.group = &groups[i]
		}
		for ; j < len(groups) && groups[j] == groups[i]; j++ {
			if roles[j] != "" {
				refs = append(refs, roles[j])
			}
			if codes[j] != "" {
				h.codes = append(h.codes, codes[j])
			}
		}
		closure, err := roleClosureCodes(ctx, q, rt, refs)
		if err != nil {
			return nil, err
		}
		h.codes = append(h.codes, closure...)
		out = append(out, h)
		i = j
	}
	return out, nil
}

// guardRoleChange checks a role change at either level: the codes added to the role, those of
// the roles it newly inherits and, when it is re-activated, everything it holds (every holder
// receives it again). nil permissions or inherits leave that set unchanged.
func (s *Server) guardRoleChange(c *call, q querier, lv level, roleID string, wasActive, active bool,
	perms []string, newPerms *[]string, inherits []string, newInherits *[]string) error {
	var conferred []string
	if newPerms != nil {
		conferred = added(perms, *newPerms)
	}
	var refs []string
	if newInherits != nil {
		refs = added(inherits, *newInherits)
	}
	if active && !wasActive {
		refs = append(refs, roleID)
	}
	codes, err := roleClosureCodes(c.ctx(), q, lv.rt, refs)
	if err != nil {
		return err
	}
	return s.guard(c, q, lv, nil, append(conferred, codes...), msgCannotGrant)
}

// guardStatusChange checks a user's status change at either level: re-activating confers
// everything the user holds; suspending or deactivating acts on the user.
func (s *Server) guardStatusChange(c *call, q querier, lv level, userID, from, to string) error {
	switch {
	case to == "active" && from != "active":
		return s.guardActOn(c, q, lv, userID, msgCannotGrant)
	case to != "active" && from == "active":
		return s.guardActOn(c, q, lv, userID, msgCannotActOn)
	}
	return nil
}

// guardRemoval checks removing a user's direct permission at either level: removing a deny
// confers the code it blocked (and nobody lifts a deny placed on themselves); removing a grant
// acts on the user.
func (s *Server) guardRemoval(c *call, q querier, lv level, userID, externalID, code string, granted bool, group *string) error {
	if granted {
		return s.guardActOn(c, q, lv, userID, msgCannotActOn)
	}
	if c.id != nil && externalID == c.id.Subject {
		return errForbidden("cannot remove a deny placed on yourself", map[string]any{"code": code})
	}
	return s.guard(c, q, lv, group, []string{code}, msgCannotGrant)
}

// guardTeamMove checks moving a tenant team under newParent: the grants restricted to the new
// parent and its ancestors that were not already the team's ancestors now reach the team, so
// the actor must be able to confer them at the new parent. Moving to the root gains nothing.
func (s *Server) guardTeamMove(c *call, q querier, lv level, db tenantDB, teamID string, newParent *string) error {
	if newParent == nil || lv.all {
		return nil
	}
	var roles, codes []string
	err := q.QueryRow(c.ctx(), `WITH RECURSIVE up(id) AS (
			SELECT $1::uuid
			UNION SELECT t.parent_team_id FROM `+db.table("teams")+` t JOIN up ON t.id = up.id WHERE t.parent_team_id IS NOT NULL
		), old(id) AS (
			SELECT parent_team_id FROM `+db.table("teams")+` WHERE id = $2::uuid AND parent_team_id IS NOT NULL
			UNION SELECT t.parent_team_id FROM `+db.table("teams")+` t JOIN old ON t.id = old.id WHERE t.parent_team_id IS NOT NULL
		), gained AS (SELECT id FROM up EXCEPT SELECT id FROM old)
		SELECT coalesce((SELECT array_agg(DISTINCT role_id::text) FROM `+db.table("user_roles")+`
				WHERE team_id IN (SELECT id FROM gained) AND (expires_at IS NULL OR expires_at > now())), '{}'),
			coalesce((SELECT array_agg(DISTINCT p.code) FROM `+db.table("user_permissions")+` up JOIN `+db.table("permissions")+` p ON p.id = up.permission_id
				WHERE up.team_id IN (SELECT id FROM gained) AND up.is_granted AND (up.expires_at IS NULL OR up.expires_at > now())), '{}')`,
		*newParent, teamID).Scan(&roles, &codes)
	if err != nil {
		return err
	}
	closure, err := roleClosureCodes(c.ctx(), q, lv.rt, roles)
	if err != nil {
		return err
	}
	return s.guard(c, q, lv, newParent, append(codes, closure...), msgCannotGrant)
}
