// Package migrations embeds neoauthz's SQL migration sets: admin, platform, tenant, analytics.
package migrations

import "embed"

// FS holds one folder per migration set, each with V<version>__<description>.sql files and
// optional U<version>__<description>.sql undo files.
//
//go:embed admin/*.sql platform/*.sql tenant/*.sql analytics/*.sql
var FS embed.FS

// The migration sets and the schema each is applied to. The tenant set is applied to every
// tenant's own schema as well as to TenantTemplateSchema.
const (
	SetAdmin     = "admin"
	SetPlatform  = "platform"
	SetTenant    = "tenant"
	SetAnalytics = "analytics"

	AdminSchema          = "admin"
	PlatformSchema       = "platform"
	TenantTemplateSchema = "tenant_template"
	AnalyticsSchema      = "analytics"
)
