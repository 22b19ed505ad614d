package decisionlog

import (
	"time"
)

// Transports a decision can arrive by (Entry.Transport).
const (
	TransportExtAuthz    = "extauthz"
	TransportForwardAuth = "forwardauth"
	TransportGRPC        = "grpc"
	TransportAuthZEN     = "authzen"
)

// Levels of Entry.Level.
const (
	LevelTenant   = "tenant"
	LevelPlatform = "platform"
)

// Entry is one recorded decision. It never holds a token or a header: only the facts the
// decision was made on and its outcome.
type Entry struct {
	DecisionID string    `json:"decision_id"`
	Time       time.Time `json:"decided_at"`
	// TenantID is the subject's tenant id ("" at platform level or when no subject was
	// established); it picks the region the entry is written to.
	TenantID   string `json:"tenant_id,omitempty"`
	Level      string `json:"level,omitempty"` // LevelTenant, LevelPlatform or "" (no subject)
	User       string `json:"user,omitempty"`  // the subject's external id
	Permission string `json:"permission"`
	// Resource of a resource check: owner, team (tenant level), target tenant (platform level).
	ResourceOwner  string `json:"resource_owner,omitempty"`
	ResourceTeam   string `json:"resource_team,omitempty"`
	ResourceTenant string `json:"resource_tenant,omitempty"`
	Allowed        bool   `json:"allowed"`
	Reason         string `json:"reason"`
	// The matched grant of an allow.
	GrantCode  string `json:"grant_code,omitempty"`
	GrantRole  string `json:"grant_role,omitempty"`
	GrantGroup string `json:"grant_group,omitempty"`
	// Version is the data version the decision was computed at (0: none).
	Version   uint64        `json:"version,omitempty"`
	Transport string        `json:"transport"`
	Method    string        `json:"method,omitempty"`
	Path      string        `json:"path,omitempty"` // normalised, never the query string
	Client    string        `json:"client_addr,omitempty"`
	Latency   time.Duration `json:"-"`
	// LatencyMicros is Latency as stored (microseconds).
	LatencyMicros int64 `json:"latency_us"`
}

// columns are the decision_log columns COPY fills, in the order of row.
var columns = []string{"decided_at", "decision_id", "tenant_id", "user_id", "permission", "allowed", "reason",
	"version", "level", "resource_owner", "resource_team", "resource_tenant", "grant_code", "grant_role",
	"grant_group", "transport", "method", "path", "client_addr", "latency_us"}

// Bounds of what is stored: every text field comes from a bounded, validated source in the pdp,
// but the log must stay bounded even if a caller manages to send something long.
const maxField = 512

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return clip(s)
}

// row is e as COPY values in the order of columns. tenantID is "" when the tenant is not a
// known one (it is stored as NULL: the column is a uuid).
func (e *Entry) row(tenantID string) []any {
	var version any
	if e.Version > 0 && e.Version <= 1<<63-1 {
		version = int64(e.Version)
	}
	lat := e.Latency.Microseconds()
	if lat > 1<<31-1 {
		lat = 1<<31 - 1
	}
	return []any{e.Time, clip(e.DecisionID), nullable(tenantID), nullable(e.User), clip(e.Permission), e.Allowed,
		clip(e.Reason), version, nullable(e.Level), nullable(e.ResourceOwner), nullable(e.ResourceTeam),
		nullable(e.ResourceTenant), nullable(e.GrantCode), nullable(e.GrantRole), nullable(e.GrantGroup),
		clip(e.Transport), nullable(e.Method), nullable(e.Path), nullable(e.Client), int32(lat)}
}
