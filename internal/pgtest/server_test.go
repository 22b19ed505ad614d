//go:build unix

package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/pgtest"
)

// count reads how many rows t has on the server at url.
func count(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n))
	return n
}

func TestStreamingReplica(t *testing.T) {
	primary := pgtest.StartPrimary(t)
	replica := primary.StartReplica(t)
	require.NotEqual(t, primary.Port, replica.Port)

	primary.Exec(`CREATE TABLE t (id int)`)
	primary.Exec(`INSERT INTO t VALUES (1)`)
	replica.CatchUp()
	assert.Equal(t, 1, count(t, replica.URL("postgres")), "the replica streams the primary's writes")

	replica.PauseReplay()
	primary.Exec(`INSERT INTO t VALUES (2)`)
	assert.Equal(t, 2, count(t, primary.URL("postgres")))
	assert.Equal(t, 1, count(t, replica.URL("postgres")), "a paused replica keeps its data as it was")
	replica.ResumeReplay()
	replica.CatchUp()
	assert.Equal(t, 2, count(t, replica.URL("postgres")), "and catches up once resumed")

	replica.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pgx.Connect(ctx, replica.URL("postgres"))
	require.Error(t, err, "a stopped replica refuses connections")
	primary.Exec(`INSERT INTO t VALUES (3)`)
	replica.Start()
	replica.CatchUp()
	assert.Equal(t, 3, count(t, replica.URL("postgres")), "a restarted replica resumes streaming")
}
