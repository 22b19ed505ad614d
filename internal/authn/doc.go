// Package authn validates Keycloak-issued JWT access tokens, one realm per tenant plus a platform realm, and turns them into an Identity.
package authn
