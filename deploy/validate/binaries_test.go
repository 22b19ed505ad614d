package validate

import (
	"bytes"
	"context"
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/neofast/neoauthz/internal/admincli"
	"github.com/neofast/neoauthz/internal/daemon"
)

// What the deploy files may name, read from the binaries themselves: the pdp's flag set and
// the admin binary's help.

// pdpFlags returns the pdp's flag set, as cmd/pdp builds it.
func pdpFlags() *flag.FlagSet {
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("pdp", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	return fs
}

var envInUsage = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)

// pdpEnv returns the environment variables the pdp reads (each flag's usage names its own).
func pdpEnv(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	pdpFlags().VisitAll(func(f *flag.Flag) {
		for _, m := range envInUsage.FindAllStringSubmatch(f.Usage, -1) {
			out[m[1]] = true
		}
	})
	require.True(t, out["ADMIN_DATABASE_URL"], "the pdp's flags name their environment variables")
	return out
}

// adminHelp is `admin help`.
func adminHelp(t *testing.T) string {
	t.Helper()
	var out bytes.Buffer
	err := admincli.Run(context.Background(), []string{"help"}, admincli.Env{Stdout: &out, Stderr: io.Discard, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	return out.String()
}

var envName = regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b`)

// adminEnv returns the environment variables `admin help` documents.
func adminEnv(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, m := range envName.FindAllString(adminHelp(t), -1) {
		out[m] = true
	}
	require.True(t, out["ADMIN_DATABASE_URL"])
	return out
}

// adminCommandFlags returns the flags `admin help` documents for a command ("serve",
// "migrate apply", ...): the --names on its usage lines.
func adminCommandFlags(t *testing.T, command string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	in := false
	for _, line := range strings.Split(adminHelp(t), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "admin "+command+" ") || trimmed == "admin "+command:
			in = true
		case strings.HasPrefix(trimmed, "admin "):
			in = false
		case trimmed == "" || !strings.HasPrefix(line, "    "):
			in = in && strings.HasPrefix(line, "    ")
		}
		if in {
			for _, m := range regexp.MustCompile(`--([a-z0-9-]+)`).FindAllStringSubmatch(line, -1) {
				out[m[1]] = true
			}
		}
	}
	require.NotEmpty(t, out, "admin help documents %q", command)
	return out
}

// checkArgs checks a command line's --flags against known.
func checkArgs(t *testing.T, where string, args []string, known func(name string) bool) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if !known(name) {
			t.Errorf("%s: flag --%s is not a flag of the binary", where, name)
		}
	}
}

func pdpKnows(name string) bool { return pdpFlags().Lookup(name) != nil }
