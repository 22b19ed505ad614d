package server

import (
	"context"
	"crypto/x509"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// trustedPeer reports whether the caller of ctx may assert a principal instead of presenting
// a token: a connection over a Unix socket (only local processes with access to the socket
// file reach it), or an mTLS peer whose verified certificate names an identity listed in
// Config.TrustedClientIdentities. A plain TCP peer, or a TLS peer without a verified client
// certificate, is never trusted, whatever its address.
func (s *Server) trustedPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	if _, ok := p.Addr.(*net.UnixAddr); ok {
		return true
	}
	if len(s.trusted) == 0 {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return false
	}
	return forEachIdentity(ti.State.VerifiedChains[0][0], s.isTrusted)
}

// forEachIdentity calls fn with the certificate's identities (subject CN, DNS SANs, URI SANs)
// until it returns true.
func forEachIdentity(leaf *x509.Certificate, fn func(string) bool) bool {
	if leaf.Subject.CommonName != "" && fn(leaf.Subject.CommonName) {
		return true
	}
	for _, d := range leaf.DNSNames {
		if fn(d) {
			return true
		}
	}
	for _, u := range leaf.URIs {
		if fn(u.String()) {
			return true
		}
	}
	return false
}

func (s *Server) isTrusted(id string) bool {
	if id == "" {
		return false
	}
	_, ok := s.trusted[id]
	return ok
}

// unixOrTLS is the gRPC server's transport credentials when TLS is configured: TLS on TCP
// connections, none on Unix socket connections. One grpc.Server serves both listeners and
// takes a single credentials option, and requiring TLS over a local socket would only force
// local callers to carry certificates without adding protection.
type unixOrTLS struct {
	credentials.TransportCredentials // TLS
}

// unixAuthInfo describes a Unix socket connection: no TLS, but the kernel carries it between
// two local processes, which is what gRPC's own local credentials call PrivacyAndIntegrity.
type unixAuthInfo struct{ credentials.CommonAuthInfo }

func (unixAuthInfo) AuthType() string { return "unix" }

func (c unixOrTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn.LocalAddr().Network() == "unix" {
		return conn, unixAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c unixOrTLS) Clone() credentials.TransportCredentials {
	return unixOrTLS{c.TransportCredentials.Clone()}
}
