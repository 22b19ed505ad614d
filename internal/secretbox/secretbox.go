// Package secretbox encrypts secrets kept at rest (registered database passwords) with
// AES-256-GCM under a key taken from the environment.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// EnvKey names the environment variable holding the base64 encoding of a 32-byte key.
const EnvKey = "NEOAUTHZ_SECRET_KEY"

// ErrNoKey is returned when a secret must be sealed or opened and no key is configured.
var ErrNoKey = errors.New("no encryption key: set " + EnvKey + " to the base64 encoding of 32 random bytes (e.g. `openssl rand -base64 32`)")

// ErrCorrupt is returned when a sealed secret does not open under the key.
var ErrCorrupt = errors.New("sealed secret does not open under " + EnvKey + " (wrong key or altered data)")

// Box seals and opens secrets. The zero value (no key) refuses both.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a base64-encoded 32-byte key; an empty key gives a Box that refuses
// to seal or open, so a deployment without passwords needs no key.
func New(encodedKey string) (*Box, error) {
	if encodedKey == "" {
		return &Box{}, nil
	}
	key, err := base64.StdEncoding.DecodeString(encodedKey)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid base64: %w", EnvKey, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%s must decode to 32 bytes, got %d", EnvKey, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext; the result is nonce || ciphertext. An empty plaintext seals to nil.
func (b *Box) Seal(plaintext string, context string) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	if b.aead == nil {
		return nil, ErrNoKey
	}
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return b.aead.Seal(nonce, nonce, []byte(plaintext), []byte(context)), nil
}

// Open decrypts what Seal produced with the same context (binding a secret to its row, so a
// sealed password copied onto another connection does not open).
func (b *Box) Open(sealed []byte, context string) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	if b.aead == nil {
		return "", ErrNoKey
	}
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return "", ErrCorrupt
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
	if err != nil {
		return "", ErrCorrupt
	}
	return string(out), nil
}
