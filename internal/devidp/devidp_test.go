package devidp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

// kidOf returns the kid in a compact JWS's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	seg := strings.SplitN(tok, ".", 2)[0]
	b, err := decodeSegment(seg)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &h))
	return h.Kid
}

func signingKids(t *testing.T, base, realm string) []string {
	t.Helper()
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	require.Equal(t, http.StatusOK, getJSON(t, base+"/realms/"+realm+"/protocol/openid-connect/certs", &jwks))
	var kids []string
	for _, k := range jwks.Keys {
		if k.Use == "sig" {
			kids = append(kids, k.Kid)
		}
	}
	return kids
}

// TestRealmsOnDemandAndKeptKeys: a realm named after start gets tokens without a restart, and
// a restarted issuer signs with the same key under the same kid.
func TestRealmsOnDemandAndKeptKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", Realms: []string{"platform"}, Audience: "neoauthz", KeyDir: dir}

	iss, err := Start(cfg)
	require.NoError(t, err)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.Equal(t, http.StatusOK, getJSON(t, iss.URL()+"/dev/token?realm=newco&sub=ann", &tok), "a realm no one named at start")
	kid := kidOf(t, tok.AccessToken)
	assert.Equal(t, []string{kid}, signingKids(t, iss.URL(), "newco"))
	platformKids := signingKids(t, iss.URL(), "platform")
	assert.NotContains(t, platformKids, kid, "every realm has its own key id")
	assert.Equal(t, http.StatusNotFound, getJSON(t, iss.URL()+"/dev/token?realm=Bad.Realm&sub=ann", &tok))
	fi, err := os.Stat(filepath.Join(dir, "newco.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	iss.Close()

	iss, err = Start(cfg)
	require.NoError(t, err)
	defer iss.Close()
	assert.Equal(t, []string{kid}, signingKids(t, iss.URL(), "newco"), "the restarted issuer keeps the key and its kid")
	assert.Equal(t, platformKids, signingKids(t, iss.URL(), "platform"))
	require.Equal(t, http.StatusOK, getJSON(t, iss.URL()+"/dev/token?realm=newco&sub=ann", &tok))
	assert.Equal(t, kid, kidOf(t, tok.AccessToken))
}

func TestLoopbackOnly(t *testing.T) {
	_, err := Start(Config{Addr: "0.0.0.0:0"})
	assert.Error(t, err)
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
