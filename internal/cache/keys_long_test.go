package cache

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUserKeyChunking checks that encoding a long user id in chunks gives the same key as
// encoding it whole, at every length around the chunk boundary.
func TestUserKeyChunking(t *testing.T) {
	for n := 0; n <= 300; n++ {
		user := strings.Repeat("ü:{}", n)[:n]
		want := "tenant:{0af3}:u:" + base64.RawURLEncoding.EncodeToString([]byte(user))
		got, err := TenantUserKey("0af3", user)
		require.NoError(t, err)
		assert.Equal(t, want, got, "user id of %d bytes", n)
		assert.Equal(t, "platform:u:"+base64.RawURLEncoding.EncodeToString([]byte(user)), PlatformUserKey(user))
	}
}
