package validate

import (
	"os"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stage is one FROM ... AS name section of a Dockerfile.
type stage struct {
	base, name string
	nodes      []*parser.Node
}

func args(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

func stages(t *testing.T, path string) map[string]*stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := parser.Parse(f)
	require.NoError(t, err)
	out := map[string]*stage{}
	var cur *stage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "from") {
			a := args(n)
			require.Len(t, a, 3, "FROM %v: every stage is named (FROM image AS name)", a)
			require.True(t, strings.EqualFold(a[1], "as"))
			cur = &stage{base: a[0], name: a[2]}
			out[cur.name] = cur
			continue
		}
		require.NotNil(t, cur, "%s before the first FROM", n.Value)
		cur.nodes = append(cur.nodes, n)
	}
	return out
}

func (s *stage) all(instr string) []*parser.Node {
	var out []*parser.Node
	for _, n := range s.nodes {
		if strings.EqualFold(n.Value, instr) {
			out = append(out, n)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	st := stages(t, "../docker/Dockerfile")
	require.Contains(t, st, "build")
	build := st["build"]
	var runs string
	for _, n := range append(build.all("run"), build.all("env")...) {
		runs += n.Original + "\n"
	}
	assert.Contains(t, runs, "CGO_ENABLED=0", "static binaries")
	assert.Contains(t, runs, "./cmd/pdp")
	assert.Contains(t, runs, "./cmd/admin")

	for _, name := range []string{"pdp", "admin"} {
		t.Run(name, func(t *testing.T) {
			s := st[name]
			require.NotNil(t, s, "a %s target", name)
			assert.True(t, strings.HasPrefix(s.base, "gcr.io/distroless/static") || s.base == "scratch",
				"base %s: no shell, no package manager", s.base)
			users := s.all("user")
			require.NotEmpty(t, users, "the image sets a USER")
			user := args(users[len(users)-1])[0]
			uid, _, _ := strings.Cut(user, ":")
			assert.NotContains(t, []string{"0", "root", ""}, uid, "the image runs as a non-root user")

			copies := s.all("copy")
			require.Len(t, copies, 1)
			assert.Contains(t, copies[0].Flags, "--from=build", "only the binary comes from the build stage")
			dest := args(copies[0])[1]

			eps := s.all("entrypoint")
			require.Len(t, eps, 1)
			assert.True(t, eps[0].Attributes["json"], "exec form: there is no shell to run a string")
			assert.Equal(t, []string{dest}, args(eps[0]), "the entrypoint is the copied binary")

			hc := s.all("healthcheck")
			require.Len(t, hc, 1)
			assert.Contains(t, hc[0].Original, `"`+dest+`", "probe"`, "the health check runs the binary's probe (no curl here)")
			for _, n := range s.all("run") {
				t.Errorf("RUN in the final stage needs a shell: %s", n.Original)
			}
		})
	}
	// The ports the images expose are the binaries' defaults.
	fs := pdpFlags()
	for _, f := range []string{"grpc-addr", "http-addr"} {
		port := strings.TrimPrefix(fs.Lookup(f).DefValue, ":")
		assert.Contains(t, args(st["pdp"].all("expose")[0]), port, "pdp EXPOSE %s (--%s)", port, f)
	}
	assert.Contains(t, args(st["admin"].all("expose")[0]), "8001")
}
