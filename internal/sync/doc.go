// Package sync keeps the pdp's caches true to PostgreSQL: it listens for the notifications
// the RBAC triggers send, turns them into version floors that make older cached values
// misses, re-reads versions after a lost connection, and polls them to bound staleness when
// notifications vanish silently.
package sync
