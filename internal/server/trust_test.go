package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// testCA issues certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "neoauthz test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn, with optional DNS and URI SANs.
func (ca *testCA) issue(t *testing.T, cn string, server bool, dns []string, uris []string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     dns,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func TestPrincipalMTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	scert, skey := ca.issue(t, "pdp", true, nil, nil)
	certFile, keyFile := writeFile(t, dir, "server.pem", scert), writeFile(t, dir, "server-key.pem", skey)
	caFile := writeFile(t, dir, "ca.pem", ca.pem)

	unix := withUnixSocket(t)
	ts := startServer(t, newFake(), unix, func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = certFile, keyFile, caFile
		c.TrustedClientIdentities = []string{"billing", "gateway.internal", "spiffe://neofast/ns/apps/sa/api"}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	addr := ts.conn.Target()

	dial := func(t *testing.T, cn string, dns, uris []string) authzv1.AuthorizationServiceClient {
		t.Helper()
		cp, kp := ca.issue(t, cn, false, dns, uris)
		pair, err := tls.X509KeyPair(cp, kp)
		require.NoError(t, err)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		})))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return authzv1.NewAuthorizationServiceClient(conn)
	}
	req := &authzv1.CheckRequest{Subject: principalSubject("acme", "alice"), Permission: "users.read.tenant"}

	tests := []struct {
		name     string
		cn       string
		dns      []string
		uris     []string
		wantCode codes.Code
	}{
		{"trusted CN", "billing", nil, nil, codes.OK},
		{"trusted DNS SAN", "whatever", []string{"gateway.internal"}, nil, codes.OK},
		{"trusted URI SAN", "whatever", nil, []string{"spiffe://neofast/ns/apps/sa/api"}, codes.OK},
		{"valid certificate, untrusted identity", "intruder", []string{"intruder.internal"}, nil, codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := dial(t, tc.cn, tc.dns, tc.uris).Check(context.Background(), req)
			require.Equal(t, tc.wantCode, status.Code(err), "got %v, want %v", err, tc.wantCode)
			if tc.wantCode == codes.OK {
				assert.True(t, resp.GetAllowed())
			}
		})
	}
	t.Run("untrusted identity may still send tokens", func(t *testing.T) {
		resp, err := dial(t, "intruder", nil, nil).Check(context.Background(), &authzv1.CheckRequest{Subject: tokenSubject("alice-token"), Permission: "users.read.tenant"})
		require.NoError(t, err)
		assert.True(t, resp.GetAllowed())
	})
	t.Run("Unix socket stays plaintext and trusted", func(t *testing.T) {
		resp, err := authzv1.NewAuthorizationServiceClient(ts.unixConn(t)).Check(context.Background(), req)
		require.NoError(t, err)
		assert.True(t, resp.GetAllowed())
	})
}
