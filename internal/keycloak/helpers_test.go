package keycloak_test

import (
	"encoding/base64"
	"os"
)

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
