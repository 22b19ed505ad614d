package migrate

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Errors returned by Apply, Rollback and Status; test for them with errors.Is.
var (
	// ErrChecksumMismatch: an applied file was edited; the error is a *ChecksumError.
	ErrChecksumMismatch = errors.New("migration edited after it was applied")
	// ErrInvalidIndex: a no-transaction file left an invalid index behind (a failed CREATE
	// INDEX CONCURRENTLY); its history row is recorded as failed.
	ErrInvalidIndex = errors.New("invalid index left behind")
	// ErrFailedMigration: the history has a failed row, which blocks further runs until they
	// are repaired (Options.Repair), as in Flyway.
	ErrFailedMigration = errors.New("failed migration in history")
	// ErrNoUndo: a version to roll back has no undo file.
	ErrNoUndo = errors.New("no undo file")
	// ErrInvalidSchemaName: the schema name is not a plain lower-case identifier.
	ErrInvalidSchemaName = errors.New("invalid schema name")
	// ErrOutOfOrder: a pending migration is lower than the highest applied version.
	ErrOutOfOrder = errors.New("pending migration below the applied version")
)

// ChecksumError reports a file whose checksum differs from the one recorded when it was
// applied. errors.Is(err, ErrChecksumMismatch) holds for it.
type ChecksumError struct {
	Script, Schema   string
	Applied, Current int32
}

// Error implements error.
func (e *ChecksumError) Error() string {
	return fmt.Sprintf("migration %s in schema %q was edited after it was applied (applied checksum %d, file checksum %d); restore the file or rerun with --repair",
		e.Script, e.Schema, e.Applied, e.Current)
}

// Is makes errors.Is(err, ErrChecksumMismatch) hold.
func (e *ChecksumError) Is(target error) bool { return target == ErrChecksumMismatch }

// Mismatch is an applied file whose current checksum differs from the recorded one.
type Mismatch struct {
	Script, Schema   string
	Applied, Current int32
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchemaName reports whether name may be used as a target schema: ^[a-z_][a-z0-9_]{0,62}$
// and not starting with "pg_" (reserved for system schemas).
func ValidSchemaName(name string) bool {
	return schemaName.MatchString(name) && !strings.HasPrefix(name, "pg_")
}

func checkSchemaName(name string) error {
	if !ValidSchemaName(name) {
		return fmt.Errorf("%w %q: want ^[a-z_][a-z0-9_]{0,62}$, not starting with pg_", ErrInvalidSchemaName, name)
	}
	return nil
}
