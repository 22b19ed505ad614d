// Package pgstore is the pdp's read-only PostgreSQL access: it loads a user's RBAC facts for the decision engine in one statement, and looks up tenants, realms and data versions.
package pgstore
