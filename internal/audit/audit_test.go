package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rows without an outbox id hash exactly as before the column existed.
func TestCanonicalWithoutOutboxIDUnchanged(t *testing.T) {
	e := Entry{ID: 7, OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Actor: "a", Action: "x", TargetType: "t"}
	c, err := canonical(&e)
	require.NoError(t, err)
	assert.JSONEq(t, `[7, "2026-01-02T03:04:05.000006Z", "a", "x", "t", null, null, null, null, null]`, string(c))
	id := "0b6f8a0e-8a51-4bd4-9b1e-2f6f0c9d1e11"
	e.OutboxID = &id
	c, err = canonical(&e)
	require.NoError(t, err)
	assert.JSONEq(t, `[7, "2026-01-02T03:04:05.000006Z", "a", "x", "t", null, null, null, null, null, "`+id+`"]`, string(c))
}
