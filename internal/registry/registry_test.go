package registry_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/registry"
	"github.com/neofast/neoauthz/internal/secretbox"
	"github.com/neofast/neoauthz/internal/testenv"
)

func TestRegisterCheckAndDeactivate(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "registry")
	good := w.AddRegion(t, "us-east-1")
	assert.True(t, good.IsHealthy)
	assert.NotNil(t, good.LastLatencyMS)

	// Nothing listens on port 1: every check fails.
	dead, err := w.Registry.RegisterConnection(ctx, registry.Connection{Name: "dead", RegionCode: "us-east-1",
		Host: "127.0.0.1", Port: 1, Database: "nothing", Username: "postgres", TLSMode: "disable", MaxConsecutiveFailures: 2})
	require.NoError(t, err)
	c, deactivated, err := w.Registry.Check(ctx, dead, 0)
	require.NoError(t, err)
	assert.False(t, c.IsHealthy)
	assert.True(t, c.IsActive)
	assert.False(t, deactivated)
	assert.Equal(t, 1, c.ConsecutiveFailures)
	require.NotNil(t, c.LastError)

	c, deactivated, err = w.Registry.Check(ctx, c, 0)
	require.NoError(t, err)
	assert.Equal(t, 2, c.ConsecutiveFailures)
	assert.False(t, c.IsActive, "deactivated after max_consecutive_failures")
	assert.True(t, deactivated)

	list, err := w.Registry.ListConnections(ctx, registry.ConnectionFilter{ActiveOnly: true})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, good.ID, list[0].ID)

	_, err = w.Registry.RegisterConnection(ctx, registry.Connection{Name: "dead", RegionCode: "us-east-1",
		Host: "127.0.0.1", Port: 2, Database: "nothing", Username: "postgres"})
	require.ErrorIs(t, err, registry.ErrConflict)
	_, err = w.Registry.GetConnection(ctx, "nope")
	require.ErrorIs(t, err, registry.ErrNotFound)
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "registry")
	_, err := w.Registry.CreateRegion(ctx, registry.Region{Code: "US_EAST"})
	var verr *registry.ValidationError
	require.ErrorAs(t, err, &verr)
	_, err = w.Registry.CreateRegion(ctx, registry.Region{Code: "us-east-1"})
	require.NoError(t, err)
	_, err = w.Registry.CreateRegion(ctx, registry.Region{Code: "us-east-1"})
	require.ErrorIs(t, err, registry.ErrConflict)

	base := registry.Connection{Name: "db", RegionCode: "us-east-1", Host: "db.internal", Database: "neoauthz", Username: "app"}
	for field, mutate := range map[string]func(*registry.Connection){
		"name":     func(c *registry.Connection) { c.Name = "Bad Name" },
		"type":     func(c *registry.Connection) { c.Type = "master" },
		"host":     func(c *registry.Connection) { c.Host = "db;rm -rf" },
		"port":     func(c *registry.Connection) { c.Port = 70000 },
		"database": func(c *registry.Connection) { c.Database = `x"; drop` },
		"username": func(c *registry.Connection) { c.Username = "a b" },
		"tls_mode": func(c *registry.Connection) { c.TLSMode = "sometimes" },
	} {
		c := base
		mutate(&c)
		_, err := w.Registry.RegisterConnection(ctx, c)
		require.ErrorAs(t, err, &verr, field)
		assert.Equal(t, field, verr.Field)
	}
	_, err = w.Registry.RegisterConnection(ctx, registry.Connection{Name: "x", RegionCode: "mars", Host: "h", Database: "d", Username: "u"})
	require.ErrorAs(t, err, &verr, "unknown region")
}

func TestPasswordsAreEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "registry")
	_, err := w.Registry.CreateRegion(ctx, registry.Region{Code: "us-east-1"})
	require.NoError(t, err)

	_, err = w.Registry.RegisterConnection(ctx, registry.Connection{Name: "db", RegionCode: "us-east-1", Host: "h", Database: "d", Username: "u", Password: "hunter2"})
	require.ErrorIs(t, err, secretbox.ErrNoKey, "a password without a key is refused, never stored in clear")

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	box, err := secretbox.New(base64.StdEncoding.EncodeToString(key))
	require.NoError(t, err)
	reg := registry.New(w.Admin, box)
	c, err := reg.RegisterConnection(ctx, registry.Connection{Name: "db", RegionCode: "us-east-1", Host: "h", Database: "d", Username: "u", Password: "hunter2"})
	require.NoError(t, err)
	var stored []byte
	require.NoError(t, w.Admin.QueryRow(ctx, `SELECT password_encrypted FROM admin.database_connections WHERE id = $1`, c.ID).Scan(&stored))
	assert.NotContains(t, string(stored), "hunter2")

	got, err := reg.GetConnection(ctx, "db")
	require.NoError(t, err)
	dsn, err := reg.ConnString(got, "")
	require.NoError(t, err)
	assert.Contains(t, dsn, "u:hunter2@h:5432/d")

	_, err = w.Registry.ConnString(got, "")
	require.ErrorIs(t, err, secretbox.ErrNoKey)
}

func TestReplicaLink(t *testing.T) {
	ctx := context.Background()
	w := testenv.New(t, "registry")
	primary := w.AddRegion(t, "us-east-1")
	_, err := w.Registry.CreateRegion(ctx, registry.Region{Code: "eu-west-1"})
	require.NoError(t, err)
	other, err := w.Registry.RegisterConnection(ctx, registry.Connection{Name: "eu-primary", RegionCode: "eu-west-1",
		Host: "eu.internal", Database: primary.Database, Username: "app"})
	require.NoError(t, err)

	replica := registry.Connection{Name: "us-replica", Type: registry.TypeReplica, RegionCode: "us-east-1",
		Host: "replica.internal", Database: primary.Database, Username: "app", PrimaryID: primary.Name}
	var verr *registry.ValidationError
	for _, tc := range []struct {
		name, field string
		mutate      func(*registry.Connection)
	}{
		{"replica without a primary", "primary", func(c *registry.Connection) { c.PrimaryID = "" }},
		{"primary that names a primary", "primary", func(c *registry.Connection) { c.Type = registry.TypePrimary }},
		{"unknown primary", "primary", func(c *registry.Connection) { c.PrimaryID = "nope" }},
		{"malformed primary", "primary", func(c *registry.Connection) { c.PrimaryID = "x'; drop" }},
		{"primary in another region", "region", func(c *registry.Connection) { c.PrimaryID = other.ID }},
		{"another database", "database", func(c *registry.Connection) { c.Database = "elsewhere" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := replica
			tc.mutate(&c)
			_, err := w.Registry.RegisterConnection(ctx, c)
			require.ErrorAs(t, err, &verr)
			assert.Equal(t, tc.field, verr.Field, "got %v", err)
		})
	}

	r, err := w.Registry.RegisterConnection(ctx, replica)
	require.NoError(t, err)
	assert.Equal(t, primary.ID, r.PrimaryID, "the name resolves to the primary's id")
	got, err := w.Registry.GetConnection(ctx, r.Name)
	require.NoError(t, err)
	assert.Equal(t, primary.ID, got.PrimaryID)

	// A replica of a replica is refused, by the registry and by the database itself.
	chained := replica
	chained.Name, chained.Host, chained.PrimaryID = "chained", "chained.internal", r.ID
	_, err = w.Registry.RegisterConnection(ctx, chained)
	require.ErrorAs(t, err, &verr)
	assert.Equal(t, "primary", verr.Field)
	for _, sql := range []string{
		`UPDATE admin.database_connections SET primary_id = (SELECT id FROM admin.database_connections WHERE name = 'us-replica')
			WHERE name = 'eu-primary'`,
		`UPDATE admin.database_connections SET region_code = 'eu-west-1' WHERE name = 'us-east-1-primary'`,
		`UPDATE admin.database_connections SET type = 'backup' WHERE name = 'us-east-1-primary'`,
		`UPDATE admin.database_connections SET region_code = 'eu-west-1' WHERE name = 'us-replica'`,
		`UPDATE admin.database_connections SET primary_id = NULL WHERE name = 'us-replica'`,
		`DELETE FROM admin.database_connections WHERE name = 'us-east-1-primary'`,
	} {
		_, err := w.Admin.Exec(ctx, sql)
		require.Error(t, err, "the database refuses: %s", sql)
	}

	list, err := w.Registry.Replicas(ctx, primary.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, r.ID, list[0].ID)
	_, err = w.Registry.Deactivate(ctx, r.Name)
	require.NoError(t, err)
	list, err = w.Registry.Replicas(ctx, primary.ID)
	require.NoError(t, err)
	assert.Empty(t, list, "an inactive replica is not listed")
}
