package daemon

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]MemoryLimit{"auto": {Auto: true}, " AUTO ": {Auto: true}, "off": {}, "0": {},
		"120MiB": {Bytes: 120 << 20}, "1GiB": {Bytes: 1 << 30}, "1048576": {Bytes: 1 << 20}} {
		got, err := ParseMemoryLimit(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, "%q", in)
		back, err := ParseMemoryLimit(got.String())
		require.NoError(t, err, "%q prints as %q", in, got.String())
		assert.Equal(t, got, back, "%q prints back", in)
	}
	for _, in := range []string{"", "on", "max", "-1", "512KiB", "1.5GiB", "90%"} {
		_, err := ParseMemoryLimit(in)
		assert.Error(t, err, "%q: got no error", in)
	}
}

// The pdp and its relay take -memory-limit and NEOAUTHZ_MEMORY_LIMIT alike, auto by default.
func TestMemoryLimitFlag(t *testing.T) {
	t.Run("pdp", func(t *testing.T) {
		checkMemoryLimitFlag(t, func(args ...string) (MemoryLimit, func() error, error) {
			c, err := parseFlags(args...)
			return c.MemoryLimit, c.Validate, err
		})
	})
	t.Run("relay", func(t *testing.T) {
		checkMemoryLimitFlag(t, func(args ...string) (MemoryLimit, func() error, error) {
			c := DefaultRelayConfig()
			fs := flag.NewFlagSet("pdp relay", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.RegisterFlags(fs)
			err := fs.Parse(args)
			return c.MemoryLimit, c.Validate, err
		})
	})
}

// checkMemoryLimitFlag checks a command's -memory-limit: parse parses the arguments as the
// command does and returns the setting and the configuration's Validate.
func checkMemoryLimitFlag(t *testing.T, parse func(args ...string) (MemoryLimit, func() error, error)) {
	m, _, err := parse()
	require.NoError(t, err)
	assert.Equal(t, MemoryLimit{Auto: true}, m, "auto by default")

	m, _, err = parse("-memory-limit", "120MiB")
	require.NoError(t, err)
	assert.Equal(t, MemoryLimit{Bytes: 120 << 20}, m)

	_, _, err = parse("-memory-limit", "lots")
	require.Error(t, err)

	t.Setenv("NEOAUTHZ_MEMORY_LIMIT", "off")
	m, _, err = parse()
	require.NoError(t, err)
	assert.Equal(t, MemoryLimit{}, m, "from the environment")

	t.Setenv("NEOAUTHZ_MEMORY_LIMIT", "lots")
	_, validate, err := parse()
	require.NoError(t, err)
	err = validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NEOAUTHZ_MEMORY_LIMIT")
}

// fakeRoot writes files (path relative to the root → content) under a new directory.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		f := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
		require.NoError(t, os.WriteFile(f, []byte(content), 0o644))
	}
	return root
}

func TestMemoryLimitCgroup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    int64
		wantSrc string // suffix of the file the limit came from
		wantErr bool
	}{
		{name: "v2 limit", files: map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "134217728\n"},
			want: 128 << 20, wantSrc: "sys/fs/cgroup/memory.max"},
		{name: "v2 max", files: map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "max\n"}},
		{name: "v2 garbage", files: map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "lots\n"}, wantErr: true},
		{name: "v2 zero", files: map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "0\n"}, wantErr: true},
		{name: "v2 empty", files: map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": ""}, wantErr: true},
		{name: "v2 no memory controller", files: map[string]string{"proc/self/cgroup": "0::/\n"}},
		{name: "v2 parent's limit is lower", files: map[string]string{
			"proc/self/cgroup":                          "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": "max\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":    "268435456\n",
			"sys/fs/cgroup/kubepods/memory.max":         "1073741824\n",
		}, want: 256 << 20, wantSrc: "kubepods/pod1/memory.max"},
		{name: "v2 own limit is lower", files: map[string]string{
			"proc/self/cgroup":                          "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": "134217728\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":    "268435456\n",
		}, want: 128 << 20, wantSrc: "kubepods/pod1/c1/memory.max"},
		{name: "v2 path outside the mount (a namespaced container)", files: map[string]string{
			"proc/self/cgroup": "0::/../../elsewhere\n", "sys/fs/cgroup/memory.max": "134217728\n",
		}, want: 128 << 20, wantSrc: "sys/fs/cgroup/memory.max"},
		{name: "v1 limit", files: map[string]string{
			"proc/self/cgroup": "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n0::/\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "134217728\n",
		}, want: 128 << 20, wantSrc: "docker/abc/memory.limit_in_bytes"},
		{name: "v1 unlimited", files: map[string]string{
			"proc/self/cgroup": "11:memory:/\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}},
		{name: "v1 garbage", files: map[string]string{
			"proc/self/cgroup": "11:memory:/\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "-5\n",
		}, wantErr: true},
		{name: "no /proc/self/cgroup", files: map[string]string{"sys/fs/cgroup/memory.max": "134217728\n"}},
		{name: "garbage /proc/self/cgroup", files: map[string]string{"proc/self/cgroup": "\x00\xff nonsense\n", "sys/fs/cgroup/memory.max": "134217728\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.files)
			got, src, err := cgroupMemoryLimit(root)
			if tc.wantErr {
				require.Error(t, err)
				p := planMemoryLimit(MemoryLimit{Auto: true}, "", root)
				assert.False(t, p.set, "an unreadable limit sets none")
				assert.Error(t, p.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.True(t, strings.HasSuffix(src, tc.wantSrc), "limit from %q, want a file ending %q", src, tc.wantSrc)
			p := planMemoryLimit(MemoryLimit{Auto: true}, "", root)
			if tc.want == 0 {
				assert.False(t, p.set, "no cgroup limit, no soft limit")
				return
			}
			assert.True(t, p.set)
			assert.Equal(t, int64(float64(tc.want)*MemoryLimitFraction), p.limit)
			assert.Equal(t, tc.want, p.cgroup)
		})
	}
}

func TestMemoryLimitPlan(t *testing.T) {
	root := fakeRoot(t, map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "134217728\n"})
	p := planMemoryLimit(MemoryLimit{Auto: true}, "", root)
	assert.Equal(t, memoryLimitPlan{limit: 120795955, set: true, source: "auto: " + filepath.Join(root, "sys/fs/cgroup/memory.max"), cgroup: 128 << 20}, p,
		"90%% of a 128 MiB container")

	// The binary's resident file pages count against the container's limit, not the runtime's.
	src := "auto: " + filepath.Join(root, "sys/fs/cgroup/memory.max")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "proc/self"), 0o755))
	status := filepath.Join(root, "proc/self/status")
	require.NoError(t, os.WriteFile(status, []byte("Name:\tpdp\nVmRSS:\t   31148 kB\nRssAnon:\t    6760 kB\nRssFile:\t   24576 kB\n"), 0o644))
	assert.Equal(t, memoryLimitPlan{limit: 98146713, set: true, source: src, cgroup: 128 << 20, file: 24 << 20},
		planMemoryLimit(MemoryLimit{Auto: true}, "", root), "90%% of the 104 MiB that 24 MiB of code leaves of 128 MiB")
	require.NoError(t, os.WriteFile(status, []byte("RssFile:\t 204800 kB\n"), 0o644))
	assert.Equal(t, int64(60397977), planMemoryLimit(MemoryLimit{Auto: true}, "", root).limit,
		"never less than 90%% of half the limit")
	require.NoError(t, os.WriteFile(status, []byte("RssFile:\t lots\n"), 0o644))
	assert.Equal(t, int64(120795955), planMemoryLimit(MemoryLimit{Auto: true}, "", root).limit, "an unreadable RssFile counts as none")

	assert.Equal(t, memoryLimitPlan{limit: 100 << 20, set: true, source: "flag"}, planMemoryLimit(MemoryLimit{Bytes: 100 << 20}, "", root))
	assert.Equal(t, memoryLimitPlan{source: "off"}, planMemoryLimit(MemoryLimit{}, "", root))
	for _, m := range []MemoryLimit{{Auto: true}, {Bytes: 100 << 20}, {}} {
		assert.Equal(t, memoryLimitPlan{source: "GOMEMLIMIT"}, planMemoryLimit(m, "200MiB", root), "%s: the operator's GOMEMLIMIT wins", m)
	}
}

// TestApplyMemoryLimit sets the process's soft limit, and restores it afterwards.
func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))

	t.Setenv("GOMEMLIMIT", "")
	ApplyMemoryLimit(MemoryLimit{Bytes: 3 << 30}, log)
	assert.Equal(t, int64(3<<30), debug.SetMemoryLimit(-1))
	assert.Contains(t, buf.String(), `"source":"flag"`)
	assert.Contains(t, buf.String(), `"limit_bytes":3221225472`)
	assert.Equal(t, 1, strings.Count(buf.String(), "\n"), "logged once")

	buf.Reset()
	t.Setenv("GOMEMLIMIT", "5GiB")
	ApplyMemoryLimit(MemoryLimit{Bytes: 100 << 20}, log)
	assert.Equal(t, int64(3<<30), debug.SetMemoryLimit(-1), "a GOMEMLIMIT in the environment is never overridden")
	assert.Contains(t, buf.String(), `"source":"GOMEMLIMIT"`)
}
