package decision

import "time"

// Input is the raw facts a loader reads from the database for one (level, tenant, user).
type Input struct {
	Level        Level
	TenantID     string // tenant id (tenant level); "" at platform level
	TenantKnown  bool   // tenant level only
	TenantStatus string // "active", "suspended", "provisioning", "deleted"
	UserKnown    bool
	UserID       string // the user's external id (token sub); compared with a resource's owner
	UserStatus   string // "active" or other
	Version      uint64 // authz_state.version the data was read at
	Roles        []Role // every role reachable from the user's assignments (the loader may pass more)
	Assignments  []Assignment
	Direct       []DirectPermission
	MemberOf     []string            // team ids the user is a member of (tenant level; ignored at platform level)
	Descendants  map[string][]string // group id -> descendant group ids; closed transitively here, cycles tolerated
}

// Role is one role row with its stored permission codes and the ids of the roles it inherits.
type Role struct {
	ID          string
	Code        string
	Active      bool
	Permissions []string // stored codes, '*' allowed per segment
	Inherits    []string // ids of roles whose permissions holders of this role receive
}

// Assignment gives the user a role, optionally restricted to a group, until ExpiresAt.
type Assignment struct {
	RoleID    string
	Group     string    // "" = unrestricted; a team id at tenant level, a tenant id at platform level
	ExpiresAt time.Time // zero = never
}

// DirectPermission is a per-user grant (Granted) or deny (!Granted).
type DirectPermission struct {
	Code      string
	Granted   bool
	Group     string    // "" = unrestricted
	ExpiresAt time.Time // zero = never
}

// statusActive is the only tenant or user status that lets evaluation reach the grants.
const statusActive = "active"
