package tenancy_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/authn"
	"github.com/neofast/neoauthz/internal/devidp"
	"github.com/neofast/neoauthz/internal/keycloak"
	"github.com/neofast/neoauthz/internal/pgstore"
	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/tenancy"
	"github.com/neofast/neoauthz/internal/testenv"
)

const kcSecret = "tenancy-test-secret"

// realmWorld is a test world whose tenancy service provisions realms in a development issuer.
func realmWorld(t *testing.T, secret string, disableOnSuspend bool) (*testenv.World, *devidp.Server) {
	t.Helper()
	idp, err := devidp.Start(devidp.Config{Addr: "127.0.0.1:0", Realms: []string{"platform"}, Audience: "neoauthz",
		AdminClientID: "neoauthz-admin", AdminSecret: kcSecret})
	require.NoError(t, err)
	t.Cleanup(idp.Close)
	c, err := keycloak.New(keycloak.Config{BaseURL: idp.URL(), Realm: "master", ClientID: "neoauthz-admin",
		ClientSecret: keycloak.Secret(secret), Timeout: 10 * time.Second}, nil)
	require.NoError(t, err)
	w := testenv.New(t, "tenancy")
	w.Tenants.Realms = &keycloak.Provisioner{Client: c, Settings: keycloak.Provisioning{RealmPattern: keycloak.DefaultRealmPattern,
		AppClientID: "app", Audience: "neoauthz-api", AccessTokenLifespan: 5 * time.Minute, DisableOnSuspend: disableOnSuspend}}
	w.AddRegion(t, "us-east-1")
	return w, idp
}

func devToken(t *testing.T, idp *devidp.Server, query string) (int, string) {
	t.Helper()
	resp, err := http.Get(idp.URL() + "/dev/token?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp.StatusCode, body.AccessToken
}

func auditActions(t *testing.T, w *testenv.World, tenantID string) []string {
	t.Helper()
	rows, err := w.Admin.Query(context.Background(), `SELECT action FROM admin.audit_log WHERE tenant_id = $1 ORDER BY id`, tenantID)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestCreateWithRealm: the realm is created and named by the pattern, the tenant accepts
// exactly its client and audience, the owner exists in Keycloak and as the tenant's owner,
// and the realm's tokens pass a validator whose global audience and clients are other ones.
func TestCreateWithRealm(t *testing.T) {
	ctx := context.Background()
	w, idp := realmWorld(t, kcSecret, false)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "rocket", Region: "us-east-1", CreateRealm: true,
		Owner: &keycloak.Owner{Username: "olivia", Email: "olivia@rocket.test"}})
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, tn.Status)
	assert.Equal(t, "tenant-rocket", tn.Realm)
	assert.True(t, tn.RealmManaged)
	assert.Equal(t, []any{"neoauthz-api"}, tn.Settings["audiences"])
	assert.Equal(t, []any{"app"}, tn.Settings["clients"])
	r, err := w.Tenants.Realms.Client.GetRealm(ctx, "tenant-rocket")
	require.NoError(t, err)
	assert.Equal(t, tn.ID, r.Attributes[keycloak.TenantAttribute])
	owner, err := w.Tenants.Realms.Client.FindUser(ctx, "tenant-rocket", "olivia")
	require.NoError(t, err)

	var role string
	pool := w.Connect(t, mustConn(t, w, *tn.ConnectionID), "")
	require.NoError(t, pool.QueryRow(ctx, `SELECT r.code FROM t_rocket.user_roles ur JOIN t_rocket.users u ON u.id = ur.user_id
		JOIN t_rocket.roles r ON r.id = ur.role_id WHERE u.external_id = $1`, owner.ID).Scan(&role))
	assert.Equal(t, "owner", role, "the owner's sub is the tenant's owner")
	assert.Contains(t, auditActions(t, w, tn.ID), "tenant.realm_provision")

	store := pgstore.New(w.Admin, w.Registry, pgstore.Options{})
	t.Cleanup(store.Close)
	v, err := authn.New(authn.Config{TrustedIssuerBases: []string{idp.URL()}, PlatformRealm: "platform",
		Audiences: []string{"someone-else"}, Clients: []string{"other-client"}}, store, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	status, tok := devToken(t, idp, "realm=tenant-rocket&username=olivia")
	require.Equal(t, http.StatusOK, status)
	id, err := v.Validate(ctx, tok)
	require.NoError(t, err, "the new realm's tokens pass the tenant's aud and azp checks")
	assert.Equal(t, tn.ID, id.TenantID)
	assert.Equal(t, owner.ID, id.Subject)
	assert.Equal(t, "app", id.AuthorizedParty)

	// The same request again is refused: the tenant exists and is active.
	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "rocket", Region: "us-east-1", CreateRealm: true})
	require.ErrorIs(t, err, registry.ErrConflict)
}

func mustConn(t *testing.T, w *testenv.World, id string) registry.Connection {
	t.Helper()
	c, err := w.Registry.GetConnection(context.Background(), id)
	require.NoError(t, err)
	return c
}

// TestRealmFailureThenRerun: Keycloak failing leaves the tenant provisioning with the error
// recorded; the same request, once Keycloak answers again, finishes it.
func TestRealmFailureThenRerun(t *testing.T) {
	ctx := context.Background()
	w, idp := realmWorld(t, kcSecret, false)
	req := tenancy.CreateRequest{Slug: "flaky", Region: "us-east-1", CreateRealm: true}
	idp.SetAdminFailing(true)
	_, err := w.Tenants.Create(ctx, req)
	require.Error(t, err)
	tn, err := w.Tenants.Get(ctx, "flaky")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusProvisioning, tn.Status)
	require.NotNil(t, tn.ProvisioningError)
	assert.Contains(t, *tn.ProvisioningError, "keycloak")
	assert.Contains(t, auditActions(t, w, tn.ID), "tenant.provision_failed")

	_, err = w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "flaky", Region: "us-east-1", Realm: "tenant-flaky"})
	require.ErrorIs(t, err, registry.ErrConflict, "a rerun must ask for the realm again")

	idp.SetAdminFailing(false)
	tn, err = w.Tenants.Create(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, tn.Status)
	assert.Nil(t, tn.ProvisioningError)
	status, _ := devToken(t, idp, "realm=tenant-flaky&sub=someone")
	assert.Equal(t, http.StatusOK, status)
}

// TestBadServiceCredentials: refused credentials are a clear error and the tenant waits in
// provisioning.
func TestBadServiceCredentials(t *testing.T) {
	ctx := context.Background()
	w, _ := realmWorld(t, "wrong", false)
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "locked", Region: "us-east-1", CreateRealm: true})
	require.ErrorIs(t, err, keycloak.ErrUnauthorized)
	assert.Contains(t, err.Error(), "refused the service account's credentials")
	tn, err := w.Tenants.Get(ctx, "locked")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusProvisioning, tn.Status)
	require.NotNil(t, tn.ProvisioningError)
	assert.NotContains(t, *tn.ProvisioningError, "wrong")
}

// TestPurgeDeletesRealm: --delete-realm needs --purge; with it the realm goes with the data.
func TestPurgeDeletesRealm(t *testing.T) {
	ctx := context.Background()
	w, idp := realmWorld(t, kcSecret, false)
	tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "gone", Region: "us-east-1", CreateRealm: true})
	require.NoError(t, err)
	_, err = w.Tenants.Delete(ctx, "gone", tenancy.DeleteOptions{DeleteRealm: true})
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)
	got, err := w.Tenants.Get(ctx, "gone")
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusActive, got.Status, "a refused deletion changes nothing")

	_, err = w.Tenants.Delete(ctx, "gone", tenancy.DeleteOptions{Purge: true, DeleteRealm: true})
	require.NoError(t, err)
	_, err = w.Tenants.Realms.Client.GetRealm(ctx, "tenant-gone")
	require.ErrorIs(t, err, keycloak.ErrNotFound)
	status, _ := devToken(t, idp, "realm=tenant-gone&sub=x")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, auditActions(t, w, tn.ID), "tenant.realm_delete")
	_, err = w.Tenants.Get(ctx, "gone")
	require.ErrorIs(t, err, registry.ErrNotFound)

	// Keycloak failing during a purge: the data goes, the row stays (deleted) with the realm
	// named, and the same command finishes.
	half, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "half", Region: "us-east-1", CreateRealm: true})
	require.NoError(t, err)
	idp.SetAdminFailing(true)
	_, err = w.Tenants.Delete(ctx, "half", tenancy.DeleteOptions{Purge: true, DeleteRealm: true})
	require.ErrorIs(t, err, tenancy.ErrRealm)
	got, err = w.Tenants.Get(ctx, half.ID)
	require.NoError(t, err)
	assert.Equal(t, tenancy.StatusDeleted, got.Status)
	idp.SetAdminFailing(false)
	_, err = w.Tenants.Delete(ctx, half.ID, tenancy.DeleteOptions{Purge: true, DeleteRealm: true})
	require.NoError(t, err)
	_, err = w.Tenants.Realms.Client.GetRealm(ctx, "tenant-half")
	require.ErrorIs(t, err, keycloak.ErrNotFound)

	// A realm neoauthz did not create is never deleted.
	plain, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "plain", Region: "us-east-1", Realm: "platform-not"})
	require.NoError(t, err)
	_, err = w.Tenants.Delete(ctx, plain.ID, tenancy.DeleteOptions{Purge: true, DeleteRealm: true})
	require.ErrorIs(t, err, tenancy.ErrNotOwned)
}

// TestSuspendDisablesRealm: with DisableOnSuspend, suspending disables the realm (it issues
// no tokens) and activating enables it; without it the realm is left alone.
func TestSuspendDisablesRealm(t *testing.T) {
	ctx := context.Background()
	for _, disable := range []bool{true, false} {
		w, idp := realmWorld(t, kcSecret, disable)
		tn, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "sleepy", Region: "us-east-1", CreateRealm: true})
		require.NoError(t, err)
		_, err = w.Tenants.Suspend(ctx, "sleepy")
		require.NoError(t, err)
		r, err := w.Tenants.Realms.Client.GetRealm(ctx, "tenant-sleepy")
		require.NoError(t, err)
		assert.Equal(t, !disable, *r.Enabled, "disable on suspend %t: got enabled %t", disable, *r.Enabled)
		status, _ := devToken(t, idp, "realm=tenant-sleepy&sub=x")
		assert.Equal(t, map[bool]int{true: http.StatusForbidden, false: http.StatusOK}[disable], status)
		_, err = w.Tenants.Activate(ctx, "sleepy")
		require.NoError(t, err)
		r, err = w.Tenants.Realms.Client.GetRealm(ctx, "tenant-sleepy")
		require.NoError(t, err)
		assert.True(t, *r.Enabled)
		if disable {
			assert.Subset(t, auditActions(t, w, tn.ID), []string{"tenant.realm_disable", "tenant.realm_enable"})
		}
	}
}

// TestRealmWithoutKeycloak: asking for a realm from an admin without Keycloak settings is a
// validation error, before anything is written.
func TestRealmWithoutKeycloak(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "tenancy")
	w.AddRegion(t, "us-east-1")
	_, err := w.Tenants.Create(ctx, tenancy.CreateRequest{Slug: "nokc", Region: "us-east-1", CreateRealm: true})
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "create_keycloak_realm", ve.Field)
	_, err = w.Tenants.Get(ctx, "nokc")
	require.ErrorIs(t, err, registry.ErrNotFound)
}
