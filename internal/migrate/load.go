package migrate

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// noTransactionMarker, as a file's first line, makes the file run outside a transaction.
const noTransactionMarker = "-- neoauthz:no-transaction"

// Migration is one versioned file, with its optional undo file.
type Migration struct {
	// Version is parsed from V<version>__<description>.sql.
	Version Version
	// Description is the file name's description with underscores turned into spaces, as
	// Flyway does.
	Description string
	// Script is the file name, as recorded in the history table.
	Script string
	// Checksum is Flyway's checksum of the raw file (before placeholder replacement).
	Checksum int32
	// SQL is the file's content, without a byte order mark.
	SQL string
	// NoTransaction is set when the file's first line is "-- neoauthz:no-transaction": the
	// file then runs statement by statement outside a transaction, as CREATE INDEX
	// CONCURRENTLY requires.
	NoTransaction bool
	// Undo is the U<version>__<description>.sql file, nil if there is none.
	Undo *Undo
}

// Undo is the undo file of a migration.
type Undo struct {
	// Script is the file name, as recorded in the history table.
	Script string
	// Checksum is Flyway's checksum of the raw file.
	Checksum int32
	// SQL is the file's content, without a byte order mark.
	SQL string
	// NoTransaction is set as for [Migration.NoTransaction] (e.g. for DROP INDEX
	// CONCURRENTLY).
	NoTransaction bool
}

// Set is the ordered migrations of one target kind (admin, platform, tenant, analytics).
type Set struct {
	// Name is the set's name: the base name of the folder it was loaded from.
	Name string
	// Migrations are ordered by version, lowest first.
	Migrations []Migration
}

// Load reads the V*.sql and U*.sql files of dir in fsys (an embed.FS, say) into a Set named
// after dir's base name. Files not ending in .sql and subfolders are ignored; every .sql file
// must be a well-formed V or U file. A malformed name, two files with the same version, an undo
// file without its V file or a file that is not UTF-8 is an error naming the file.
func Load(fsys fs.FS, dir string) (Set, error) {
	set := Set{Name: path.Base(dir)}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return Set{}, fmt.Errorf("load migrations from %s: %w", dir, err)
	}
	var undos []parsedFile
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		f, err := parseFile(fsys, dir, name)
		if err != nil {
			return Set{}, err
		}
		if f.undo {
			undos = append(undos, f)
			continue
		}
		set.Migrations = append(set.Migrations, Migration{
			Version:       f.version,
			Description:   f.description,
			Script:        name,
			Checksum:      f.checksum,
			SQL:           f.sql,
			NoTransaction: f.noTx,
		})
	}
	slices.SortStableFunc(set.Migrations, func(a, b Migration) int { return a.Version.Compare(b.Version) })
	byKey := make(map[string]int, len(set.Migrations))
	for i, m := range set.Migrations {
		if prev, ok := byKey[m.Version.key()]; ok {
			return Set{}, fmt.Errorf("load migrations from %s: %s and %s have the same version %s",
				dir, set.Migrations[prev].Script, m.Script, m.Version)
		}
		byKey[m.Version.key()] = i
	}
	for _, u := range undos {
		i, ok := byKey[u.version.key()]
		if !ok {
			return Set{}, fmt.Errorf("load migrations from %s: undo file %s has no V%s__*.sql file",
				dir, u.name, u.version)
		}
		m := &set.Migrations[i]
		if m.Undo != nil {
			return Set{}, fmt.Errorf("load migrations from %s: %s and %s undo the same version %s",
				dir, m.Undo.Script, u.name, u.version)
		}
		m.Undo = &Undo{Script: u.name, Checksum: u.checksum, SQL: u.sql, NoTransaction: u.noTx}
	}
	return set, nil
}

// Latest returns the highest version of the set (the zero Version for an empty set).
func (s Set) Latest() Version {
	if len(s.Migrations) == 0 {
		return Version{}
	}
	return s.Migrations[len(s.Migrations)-1].Version
}

// find returns the migration with version v.
func (s Set) find(v Version) (Migration, bool) {
	i, ok := slices.BinarySearchFunc(s.Migrations, v, func(m Migration, v Version) int { return m.Version.Compare(v) })
	if !ok {
		return Migration{}, false
	}
	return s.Migrations[i], true
}

type parsedFile struct {
	name        string
	undo        bool
	version     Version
	description string
	checksum    int32
	sql         string
	noTx        bool
}

func parseFile(fsys fs.FS, dir, name string) (parsedFile, error) {
	f := parsedFile{name: name}
	fail := func(format string, args ...any) (parsedFile, error) {
		return parsedFile{}, fmt.Errorf("migration file %s: %s", path.Join(dir, name), fmt.Sprintf(format, args...))
	}
	switch name[0] {
	case 'V':
	case 'U':
		f.undo = true
	default:
		return fail("want V<version>__<description>.sql or U<version>__<description>.sql (repeatable R__ files are not supported)")
	}
	base := strings.TrimSuffix(name[1:], ".sql")
	ver, desc, ok := strings.Cut(base, "__")
	if !ok || desc == "" {
		return fail("want %c<version>__<description>.sql", name[0])
	}
	v, err := ParseVersion(ver)
	if err != nil {
		return fail("%v", err)
	}
	f.version = v
	f.description = strings.ReplaceAll(desc, "_", " ")
	// The history table's columns are varchar(200) and varchar(1000).
	if n := utf8.RuneCountInString(f.description); n > 200 {
		return fail("description is %d characters, want at most 200", n)
	}
	if n := utf8.RuneCountInString(name); n > 1000 {
		return fail("name is %d characters, want at most 1000", n)
	}
	data, err := fs.ReadFile(fsys, path.Join(dir, name))
	if err != nil {
		return fail("%v", err)
	}
	// Flyway decodes files as UTF-8; for anything else its checksum would differ from ours.
	if !utf8.Valid(data) {
		return fail("not valid UTF-8")
	}
	f.checksum = checksum(data)
	data = bytes.TrimPrefix(data, bom)
	f.sql = string(data)
	if lines := readLines(data); len(lines) > 0 {
		f.noTx = strings.TrimSpace(string(lines[0])) == noTransactionMarker
	}
	return f, nil
}
