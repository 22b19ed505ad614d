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
// *.*.* included, to anyone, itself too. So a platform RBAC write may only confer permissions the
// actor holds itself:
//
//   - What a write confers: assigning a role confers every code of the role and of the active
//     roles it inherits, recursively (an inactive inherited role stops the walk; cycles end
//     because each role is visited once). The assigned role's own codes count even while it is
//     inactive, since it can be reactivated. A direct grant (granted: true) confers its code. A
//     role POST or PATCH confers the codes added to the role plus those of the roles it newly
//     inherits (walked as for an assignment). Denies, revocations and removals confer nothing
//     and stay allowed for whoever may call the route.
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
// inherit, recursively; UNION visits each role once, so an inheritance cycle terminates.
func roleClosureCodes(ctx context.Context, q querier, refs []string) ([]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	var codes []string
	err := q.QueryRow(ctx, `WITH RECURSIVE up(id) AS (
			SELECT id FROM admin.platform_roles WHERE id::text = ANY ($1::text[]) OR code = ANY ($1::text[])
			UNION
			SELECT ri.inherited_role_id FROM admin.platform_role_inherits ri
			JOIN up ON ri.role_id = up.id
			JOIN admin.platform_roles r ON r.id = ri.inherited_role_id AND r.is_active
		) SELECT coalesce(array_agg(DISTINCT p.code ORDER BY p.code), '{}')
		FROM up JOIN admin.platform_role_permissions rp ON rp.role_id = up.id
		JOIN admin.platform_permissions p ON p.id = rp.permission_id`, refs).Scan(&codes)
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

// guardConferral refuses (403) a write conferring codes the actor does not hold: unrestricted
// when tenant is nil (code checks), else restricted to that tenant id (resource checks on it).
// It must run before the write, inside its transaction.
func (s *Server) guardConferral(c *call, q querier, tenant *string, conferred []string) error {
	if len(conferred) == 0 {
		return nil
	}
	if c.actorSet == nil {
		return errForbidden("cannot grant permissions you do not hold", map[string]any{"reason": "no authenticated actor"})
	}
	// The catalog's concrete codes, as pgstore.Store.PlatformCatalog reads them, but through the
	// write's transaction: same snapshot, and no second pool connection while the transaction
	// holds one.
	var catalog []string
	if err := q.QueryRow(c.ctx(), `SELECT coalesce(array_agg(code ORDER BY code COLLATE "C"), '{}')
		FROM admin.platform_permissions WHERE NOT is_wildcard`).Scan(&catalog); err != nil {
		return err
	}
	codes := expandCodes(conferred, catalog)
	if len(codes) == 0 {
		return nil
	}
	set := c.actorSet
	if tenant == nil {
		var err error
		if set, err = unrestrictedSet(c.actorIn, s.Now); err != nil {
			return err
		}
	}
	now := s.Now()
	var missing []string
	for _, code := range codes {
		req := decision.Request{Permission: code}
		if tenant != nil {
			r, rest, _ := strings.Cut(code, ".")
			a, _, _ := strings.Cut(rest, ".")
			req = decision.Request{Permission: r + "." + a, Resource: decision.Resource{Group: *tenant}, HasResource: true}
		}
		// A check that cannot be decided (a malformed catalog code) counts as missing: fail closed.
		if d, err := set.Check(now, req); err != nil || !d.Allowed {
			missing = append(missing, code)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	details := map[string]any{"missing": missing[:min(len(missing), maxMissingListed)], "missing_count": len(missing)}
	if tenant != nil {
		details["tenant_id"] = *tenant
	}
	return errForbidden("cannot grant permissions you do not hold", details)
}
