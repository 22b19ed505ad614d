// Package authzv1 holds the Go code generated from authz.proto, the neoauthz.v1 gRPC API.
package authzv1
