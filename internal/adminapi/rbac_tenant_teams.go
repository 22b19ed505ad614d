package adminapi

import (
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/neofast/neoauthz/internal/registry"
)

// Team is a tenant team; the hierarchy is a forest (parent_team_id), kept acyclic by the
// teams_no_cycle trigger.
type Team struct {
	ID           string    `json:"id"`
	Slug         string    `json:"slug"`
	Name         string    `json:"name"`
	ParentTeamID *string   `json:"parent_team_id,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// CreateTeam is the body of POST /teams; parent_team_id is a team id or slug.
type CreateTeam struct {
	Slug         string  `json:"slug"`
	Name         string  `json:"name"`
	ParentTeamID *string `json:"parent_team_id"`
}

// PatchTeam is the body of PATCH /teams/{team}; parent_team_id null moves the team to the root.
type PatchTeam struct {
	Name         optional[string] `json:"name"`
	ParentTeamID optional[string] `json:"parent_team_id"`
}

// TeamMember is a user's membership of a team.
type TeamMember struct {
	TeamID     string    `json:"team_id"`
	UserID     string    `json:"user_id"`
	ExternalID string    `json:"external_id"`
	CreatedAt  time.Time `json:"created_at"`
}

// AddTeamMember is the body of POST /teams/{team}/members; user_id is the user's external id
// (its token sub) or id.
type AddTeamMember struct {
	UserID string `json:"user_id"`
}

const teamColumns = `id::text, slug, name, parent_team_id::text, created_at, updated_at`

func scanTeam(row pgx.Row) (Team, error) {
	var t Team
	err := row.Scan(&t.ID, &t.Slug, &t.Name, &t.ParentTeamID, &t.CreatedAt, &t.UpdatedAt)
	return t, err
}

// teamByRef loads a team named by a path parameter (id or slug): 404 when it does not exist.
func teamByRef(c *call, q querier, db tenantDB, ref string) (Team, error) {
	t, err := scanTeam(q.QueryRow(c.ctx(), `SELECT `+teamColumns+` FROM `+db.table("teams")+` WHERE id::text = $1 OR slug = $1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return Team{}, errNotFound("team " + ref + " does not exist")
	}
	return t, err
}

// parentTeam resolves a parent reference from a body: a missing team is a 422 on the field.
func parentTeam(c *call, q querier, db tenantDB, ref string) (string, error) {
	id, found, err := lookupID(c.ctx(), q, db.table("teams"), "slug", ref)
	if err == nil && !found {
		err = errValidation("parent_team_id", "no team "+ref)
	}
	return id, err
}

// teamWriteError turns the database's refusals of a team change into messages that say what
// to do: the cycle trigger raises check_violation with "own ancestor", which is a conflict with
// the current hierarchy (409), not an invalid field.
func teamWriteError(err error) error {
	switch pgCode(err) {
	case "23514":
		if strings.Contains(err.Error(), "own ancestor") || strings.Contains(err.Error(), "teams_check") {
			return errConflict("team hierarchy cycle: the new parent is the team itself or one of its descendants")
		}
	case "23503":
		return errConflict("the team has child teams: move or delete them first")
	}
	return err
}

func (s *Server) createTeam(c *call) error {
	var req CreateTeam
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = req.Slug
	}
	fe := fieldErrors{}
	if !registry.ValidSlug(req.Slug) {
		fe.add("slug", "use lowercase letters, digits and dashes (at most 63), starting and ending with a letter or digit")
	}
	if len(req.Name) > 200 {
		fe.add("name", "at most 200 characters")
	}
	if err := fe.err(); err != nil {
		return err
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var team Team
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var parent *string
		if req.ParentTeamID != nil && *req.ParentTeamID != "" {
			id, err := parentTeam(c, tx, db, *req.ParentTeamID)
			if err != nil {
				return auditRecord{}, err
			}
			parent = &id
		}
		var err error
		team, err = scanTeam(tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("teams")+` (slug, name, parent_team_id) VALUES ($1, $2, $3::uuid)
			RETURNING `+teamColumns, req.Slug, req.Name, parent))
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("team " + req.Slug + " already exists")
		}
		return auditRecord{Action: "tenant_team.create", TargetType: "tenant_team", TargetID: team.ID, After: team}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, team, map[string]any{"version": v})
}

func (s *Server) listTeams(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	total := 0
	rows, err := db.pool.Query(c.ctx(), `SELECT `+teamColumns+`, count(*) OVER () FROM `+db.table("teams")+`
		ORDER BY slug COLLATE "C" LIMIT $1 OFFSET $2`, size, (page-1)*size)
	list, err := collect(rows, err, func(row pgx.Row) (Team, error) {
		var t Team
		err := row.Scan(&t.ID, &t.Slug, &t.Name, &t.ParentTeamID, &t.CreatedAt, &t.UpdatedAt, &total)
		return t, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) getTeam(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	t, err := teamByRef(c, db.pool, db, c.r.PathValue("team"))
	if err != nil {
		return err
	}
	return c.ok(200, t, nil)
}

func (s *Server) patchTeam(c *call) error {
	var req PatchTeam
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Name.Set && (req.Name.Value == nil || *req.Name.Value == "" || len(*req.Name.Value) > 200) {
		return errValidation("name", "1 to 200 characters")
	}
	db, lv, err := s.tenantDBLevel(c)
	if err != nil {
		return err
	}
	var before, after Team
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if before, err = teamByRef(c, tx, db, c.r.PathValue("team")); err != nil {
			return auditRecord{}, err
		}
		name, parent := before.Name, before.ParentTeamID
		if req.Name.Set {
			name = *req.Name.Value
		}
		if req.ParentTeamID.Set {
			parent = nil
			if ref := req.ParentTeamID.Value; ref != nil && *ref != "" {
				id, err := parentTeam(c, tx, db, *ref)
				if err != nil {
					return auditRecord{}, err
				}
				parent = &id
			}
			if err := s.guardTeamMove(c, tx, lv, db, before.ID, parent); err != nil {
				return auditRecord{}, err
			}
		}
		after, err = scanTeam(tx.QueryRow(c.ctx(), `UPDATE `+db.table("teams")+` SET name = $2, parent_team_id = $3::uuid, updated_at = now()
			WHERE id = $1::uuid RETURNING `+teamColumns, before.ID, name, parent))
		return auditRecord{Action: "tenant_team.update", TargetType: "tenant_team", TargetID: before.ID, Before: before, After: after}, teamWriteError(err)
	})
	if err != nil {
		return err
	}
	return c.ok(200, after, map[string]any{"version": v})
}

func (s *Server) deleteTeam(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var team Team
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		var err error
		if team, err = teamByRef(c, tx, db, c.r.PathValue("team")); err != nil {
			return auditRecord{}, err
		}
		// Memberships and team-restricted grants go with the team (ON DELETE CASCADE); child
		// teams do not (RESTRICT), so deleting a subtree is an explicit, bottom-up act.
		_, err = tx.Exec(c.ctx(), `DELETE FROM `+db.table("teams")+` WHERE id = $1::uuid`, team.ID)
		return auditRecord{Action: "tenant_team.delete", TargetType: "tenant_team", TargetID: team.ID, Before: team}, teamWriteError(err)
	})
	if err != nil {
		return err
	}
	return c.ok(200, team, map[string]any{"version": v})
}

func (s *Server) addTeamMember(c *call) error {
	var req AddTeamMember
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.UserID == "" {
		return errValidation("user_id", "required: the user's external id")
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var m TeamMember
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		team, err := teamByRef(c, tx, db, c.r.PathValue("team"))
		if err != nil {
			return auditRecord{}, err
		}
		err = tx.QueryRow(c.ctx(), `SELECT id::text, external_id FROM `+db.table("users")+` WHERE id::text = $1 OR external_id = $1`, req.UserID).
			Scan(&m.UserID, &m.ExternalID)
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errValidation("user_id", "no user "+req.UserID)
		}
		if err != nil {
			return auditRecord{}, err
		}
		m.TeamID = team.ID
		err = tx.QueryRow(c.ctx(), `INSERT INTO `+db.table("team_members")+` (team_id, user_id) VALUES ($1::uuid, $2::uuid) RETURNING created_at`,
			m.TeamID, m.UserID).Scan(&m.CreatedAt)
		if pgCode(err) == "23505" {
			return auditRecord{}, errConflict("user " + m.ExternalID + " is already a member of team " + team.Slug)
		}
		return auditRecord{Action: "tenant_team_member.add", TargetType: "tenant_team", TargetID: team.ID, After: m}, err
	})
	if err != nil {
		return err
	}
	return c.ok(201, m, map[string]any{"version": v})
}

func (s *Server) listTeamMembers(c *call) error {
	page, size, err := c.page()
	if err != nil {
		return err
	}
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	team, err := teamByRef(c, db.pool, db, c.r.PathValue("team"))
	if err != nil {
		return err
	}
	total := 0
	rows, err := db.pool.Query(c.ctx(), `SELECT m.team_id::text, m.user_id::text, u.external_id, m.created_at, count(*) OVER ()
		FROM `+db.table("team_members")+` m JOIN `+db.table("users")+` u ON u.id = m.user_id
		WHERE m.team_id = $1::uuid ORDER BY u.external_id COLLATE "C" LIMIT $2 OFFSET $3`, team.ID, size, (page-1)*size)
	list, err := collect(rows, err, func(row pgx.Row) (TeamMember, error) {
		var m TeamMember
		err := row.Scan(&m.TeamID, &m.UserID, &m.ExternalID, &m.CreatedAt, &total)
		return m, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, list, pageMeta(page, size, total))
}

func (s *Server) removeTeamMember(c *call) error {
	db, err := s.tenantDB(c)
	if err != nil {
		return err
	}
	var m TeamMember
	v, err := s.tenantWrite(c, db, func(tx pgx.Tx) (auditRecord, error) {
		team, err := teamByRef(c, tx, db, c.r.PathValue("team"))
		if err != nil {
			return auditRecord{}, err
		}
		user := c.r.PathValue("user")
		err = tx.QueryRow(c.ctx(), `DELETE FROM `+db.table("team_members")+` m USING `+db.table("users")+` u
			WHERE m.team_id = $1::uuid AND u.id = m.user_id AND (u.id::text = $2 OR u.external_id = $2)
			RETURNING m.team_id::text, m.user_id::text, u.external_id, m.created_at`, team.ID, user).
			Scan(&m.TeamID, &m.UserID, &m.ExternalID, &m.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return auditRecord{}, errNotFound("user " + user + " is not a member of team " + team.Slug)
		}
		return auditRecord{Action: "tenant_team_member.remove", TargetType: "tenant_team", TargetID: team.ID, Before: m}, err
	})
	if err != nil {
		return err
	}
	return c.ok(200, m, map[string]any{"version": v})
}
