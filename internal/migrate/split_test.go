package migrate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"simple", "SELECT 1; SELECT 2;", []string{"SELECT 1;", " SELECT 2;"}},
		{"no final semicolon", "SELECT 1;\nSELECT 2", []string{"SELECT 1;", "\nSELECT 2"}},
		{"marker and blanks dropped", "-- neoauthz:no-transaction\n\n;  ;\n/* c; */\n", nil},
		{"quotes", `SELECT 'a;''b', "x;""y", E'\';' ; SELECT 2`, []string{`SELECT 'a;''b', "x;""y", E'\';' ;`, " SELECT 2"}},
		{"backslash is plain in standard strings", `SELECT 'a\'; SELECT 2`, []string{`SELECT 'a\';`, " SELECT 2"}},
		{"dollar quotes", "DO $$ BEGIN PERFORM 1; END $$; DO $f$ x; $$ y; $f$;", []string{"DO $$ BEGIN PERFORM 1; END $$;", " DO $f$ x; $$ y; $f$;"}},
		{"parameter is not a tag", "SELECT $1; SELECT a$b$;", []string{"SELECT $1;", " SELECT a$b$;"}},
		{"comments", "SELECT 1 -- a; b\n; /* x /* y; */ z; */ SELECT 2;", []string{"SELECT 1 -- a; b\n;", " /* x /* y; */ z; */ SELECT 2;"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := splitStatements(tc.in)
			assert.Equal(t, tc.want, got, "got %q, want %q", got, tc.want)
		})
	}
}

func FuzzSplitStatements(f *testing.F) {
	for _, s := range []string{"SELECT 1; SELECT 2", "DO $$ ; $$;", "'a;'';'", "/* /* */ ; */", "E'\\';'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		// The pieces are consecutive slices of the input: nothing is lost but blank pieces.
		rest := sql
		for _, stmt := range splitStatements(sql) {
			i := strings.Index(rest, stmt)
			if i < 0 {
				t.Fatalf("statement %q not found in order in %q", stmt, sql)
			}
			if strings.Trim(stmt, " \t\n\r\f\v;") == "" {
				t.Fatalf("blank statement %q", stmt)
			}
			rest = rest[i+len(stmt):]
		}
	})
}
