package secretbox

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(k)
}

func TestSealOpen(t *testing.T) {
	box, err := New(newKey(t))
	require.NoError(t, err)
	sealed, err := box.Seal("s3cret", "conn-1")
	require.NoError(t, err)
	assert.NotContains(t, string(sealed), "s3cret")

	got, err := box.Open(sealed, "conn-1")
	require.NoError(t, err)
	assert.Equal(t, "s3cret", got)

	_, err = box.Open(sealed, "conn-2")
	require.ErrorIs(t, err, ErrCorrupt, "a secret must not open under another row's context")

	sealed[len(sealed)-1] ^= 1
	_, err = box.Open(sealed, "conn-1")
	require.ErrorIs(t, err, ErrCorrupt)

	other, err := New(newKey(t))
	require.NoError(t, err)
	sealed2, err := box.Seal("s3cret", "c")
	require.NoError(t, err)
	_, err = other.Open(sealed2, "c")
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestKeyValidationAndEmpty(t *testing.T) {
	_, err := New("not base64!")
	require.Error(t, err)
	_, err = New(base64.StdEncoding.EncodeToString([]byte("short")))
	require.Error(t, err)

	box, err := New("")
	require.NoError(t, err)
	sealed, err := box.Seal("", "c")
	require.NoError(t, err)
	assert.Nil(t, sealed, "an empty password needs no key")
	_, err = box.Seal("pw", "c")
	require.ErrorIs(t, err, ErrNoKey)
	_, err = box.Open([]byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "c")
	require.ErrorIs(t, err, ErrNoKey)
}
