package migrate

import (
	"testing"
	"testing/fstest"

	"github.com/neofast/neoauthz/migrations"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"m/tenant/V1__create_roles.sql":    file("CREATE TABLE roles (id int);\n"),
		"m/tenant/U1__create_roles.sql":    file("DROP TABLE roles;\n"),
		"m/tenant/V1.10__later.sql":        file("SELECT 110;"),
		"m/tenant/V1_9__earlier.sql":       file("SELECT 19;"),
		"m/tenant/V2__index.sql":           file("-- neoauthz:no-transaction\r\nCREATE INDEX CONCURRENTLY i ON roles (id);"),
		"m/tenant/README.md":               file("not a migration"),
		"m/tenant/sub/V9__ignored_dir.sql": file("SELECT 9;"),
	}
	set, err := Load(fsys, "m/tenant")
	require.NoError(t, err)
	assert.Equal(t, "tenant", set.Name, "got name %q, want tenant", set.Name)
	var got []string
	for _, m := range set.Migrations {
		got = append(got, m.Version.String())
	}
	assert.Equal(t, []string{"1", "1.9", "1.10", "2"}, got, "got order %v", got)
	assert.Equal(t, "2", set.Latest().String(), "got latest %s, want 2", set.Latest())

	m := set.Migrations[0]
	assert.Equal(t, "create roles", m.Description, "got description %q", m.Description)
	assert.Equal(t, "V1__create_roles.sql", m.Script)
	assert.Equal(t, checksum([]byte("CREATE TABLE roles (id int);\n")), m.Checksum)
	assert.False(t, m.NoTransaction, "got NoTransaction for a plain file")
	require.NotNil(t, m.Undo, "got no undo, want U1__create_roles.sql")
	assert.Equal(t, "U1__create_roles.sql", m.Undo.Script)
	assert.Equal(t, "DROP TABLE roles;\n", m.Undo.SQL)
	assert.Nil(t, set.Migrations[1].Undo, "got an undo for V1_9")
	assert.True(t, set.Migrations[3].NoTransaction, "got NoTransaction false, want true for a marked file")

	empty, err := Load(fstest.MapFS{"e/README": file("")}, "e")
	require.NoError(t, err)
	assert.True(t, empty.Latest().IsZero(), "got latest %q for an empty set, want none", empty.Latest())
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"no separator", map[string]string{"V1_roles.sql": ""}, "V1_roles.sql"},
		{"empty description", map[string]string{"V1__.sql": ""}, "V1__.sql"},
		{"bad version", map[string]string{"V1a__roles.sql": ""}, "V1a__roles.sql"},
		{"no version", map[string]string{"V__roles.sql": ""}, "V__roles.sql"},
		{"repeatable", map[string]string{"R__views.sql": ""}, "R__views.sql"},
		{"lower case", map[string]string{"v1__roles.sql": ""}, "v1__roles.sql"},
		{"duplicate", map[string]string{"V1__a.sql": "", "V1__b.sql": ""}, "V1__b.sql"},
		{"duplicate by value", map[string]string{"V1__a.sql": "", "V1.0__b.sql": ""}, "V1.0__b.sql"},
		{"orphan undo", map[string]string{"V1__a.sql": "", "U2__b.sql": ""}, "U2__b.sql"},
		{"two undos", map[string]string{"V1__a.sql": "", "U1__a.sql": "", "U1.0__a.sql": ""}, "U1__a.sql"},
		{"not utf-8", map[string]string{"V1__a.sql": "SELECT '\xff';"}, "V1__a.sql"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, data := range tc.files {
				fsys["d/"+name] = file(data)
			}
			_, err := Load(fsys, "d")
			require.Error(t, err, "got no error, want one naming %s", tc.want)
			assert.Contains(t, err.Error(), tc.want, "got %q, want it to name %s", err, tc.want)
		})
	}
	_, err := Load(fstest.MapFS{}, "missing")
	assert.Error(t, err, "got no error for a missing folder")
}

// The embedded sets must load: a misnamed file would otherwise surface only at deploy time.
func TestLoadEmbedded(t *testing.T) {
	for _, name := range []string{migrations.SetAdmin, migrations.SetPlatform, migrations.SetTenant, migrations.SetAnalytics} {
		set, err := Load(migrations.FS, name)
		require.NoError(t, err, "load %s", name)
		assert.NotEmpty(t, set.Migrations, "got no migrations in %s", name)
		assert.Equal(t, name, set.Name)
	}
}
