package adminapi

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/devidp"
	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/tenancy"
)

// TestTenantRealmThroughAPI: create_keycloak_realm creates the realm (audited), suspend and
// activate follow into Keycloak when so configured, a Keycloak failure is a 502 that leaves the
// tenant provisioning, and purge with delete_realm removes the realm.
func TestTenantRealmThroughAPI(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	idp, err := devidp.Start(devidp.Config{Addr: "127.0.0.1:0", AdminClientID: "svc", AdminSecret: "api-test-secret"})
	require.NoError(t, err)
	t.Cleanup(idp.Close)
	kc, err := keycloak.New(keycloak.Config{BaseURL: idp.URL(), Realm: "master", ClientID: "svc", ClientSecret: "api-test-secret", Timeout: 10 * time.Second}, nil)
	require.NoError(t, err)
	e.w.Tenants.Realms = &keycloak.Provisioner{Client: kc, Settings: keycloak.Provisioning{RealmPattern: "kc-{slug}",
		AppClientID: "web", Audience: "neoauthz", AccessTokenLifespan: time.Minute, DisableOnSuspend: true}}
	const base = "/api/v1/admin/tenants"

	r := e.do("POST", base, e.admin, map[string]any{"slug": "zeta", "region": "eu-west-1", "create_keycloak_realm": true,
		"keycloak_owner": map[string]any{"username": "zoe", "email": "zoe@zeta.test"}})
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var tn tenancy.Tenant
	r.into(&tn)
	assert.Equal(t, "kc-zeta", tn.Realm)
	assert.True(t, tn.RealmManaged)
	assert.Equal(t, []any{"web"}, tn.Settings["clients"])
	_, err = kc.FindUser(ctx, "kc-zeta", "zoe")
	require.NoError(t, err)

	r = e.do("POST", base+"/zeta/suspend", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	realm, err := kc.GetRealm(ctx, "kc-zeta")
	require.NoError(t, err)
	assert.False(t, *realm.Enabled, "suspending disabled the realm")
	r = e.do("POST", base+"/zeta/activate", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	realm, err = kc.GetRealm(ctx, "kc-zeta")
	require.NoError(t, err)
	assert.True(t, *realm.Enabled)

	idp.SetAdminFailing(true)
	r = e.do("POST", base, e.admin, map[string]any{"slug": "eta", "region": "eu-west-1", "create_keycloak_realm": true})
	require.Equal(t, 502, r.Status, "%s", r.Body)
	assert.Contains(t, r.Error.Message, "rerun to finish")
	r = e.do("GET", base+"/eta", e.admin, nil)
	var eta tenancy.Tenant
	r.into(&eta)
	assert.Equal(t, tenancy.StatusProvisioning, eta.Status)
	idp.SetAdminFailing(false)
	r = e.do("POST", base, e.admin, map[string]any{"slug": "eta", "region": "eu-west-1", "create_keycloak_realm": true})
	require.Equal(t, 201, r.Status, "the same request finishes it: %s", r.Body)

	r = e.do("DELETE", base+"/zeta?delete_realm=true", e.admin, nil)
	require.Equal(t, 422, r.Status, "delete_realm needs purge: %s", r.Body)
	r = e.do("DELETE", base+"/zeta?purge=true&delete_realm=true", e.admin, nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	_, err = kc.GetRealm(ctx, "kc-zeta")
	require.ErrorIs(t, err, keycloak.ErrNotFound)
	var actions []string
	rows, err := e.w.Admin.Query(ctx, `SELECT action FROM admin.audit_log WHERE tenant_id = $1 ORDER BY id`, tn.ID)
	require.NoError(t, err)
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		actions = append(actions, a)
	}
	require.NoError(t, rows.Err())
	assert.Subset(t, actions, []string{"tenant.realm_provision", "tenant.realm_disable", "tenant.realm_enable", "tenant.realm_delete", "tenant.purge"})
}
