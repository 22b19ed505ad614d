// Package decision compiles a user's RBAC facts into an immutable permission set and answers checks on it without allocating.
package decision
