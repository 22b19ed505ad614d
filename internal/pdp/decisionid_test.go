package pdp

import (
	"encoding/hex"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Decision ids are 32 hex digits, the process's prefix then a counter, and unique when taken
// from many goroutines across many blocks.
func TestCheckDecisionIDsUnique(t *testing.T) {
	const goroutines, each = 8, 5 * idsPerBlock
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ids[g] = append(ids[g], newDecisionID())
			}
		})
	}
	wg.Wait()
	prefix := hex.EncodeToString(decisionPrefix[:])
	seen := map[string]bool{}
	for _, list := range ids {
		for _, id := range list {
			require.Len(t, id, idLen)
			_, err := hex.DecodeString(id)
			require.NoError(t, err, id)
			assert.Equal(t, prefix, id[:16])
			require.False(t, seen[id], "id %s handed out twice", id)
			seen[id] = true
		}
	}
	assert.Len(t, seen, goroutines*each)
}
