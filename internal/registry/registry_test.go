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
