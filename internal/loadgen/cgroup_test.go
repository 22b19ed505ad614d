package loadgen

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// usage reads cgroup v1's and v2's files, which name the same figures apart.
func TestCgroupUsage(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"v1": {"memory.max_usage_in_bytes": "114397184\n", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"},
		"v2": {"memory.peak": "114397184\n", "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n"},
	} {
		dir := t.TempDir()
		for f, content := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		u, err := (&memoryCgroup{dir: dir}).usage()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if u.peak != 114397184 || u.oomKills != 2 {
			t.Errorf("%s: got peak %d, %d OOM kills; want 114397184, 2", name, u.peak, u.oomKills)
		}
	}
	if _, err := (&memoryCgroup{dir: t.TempDir()}).usage(); err == nil {
		t.Error("no error for a directory that is no memory cgroup")
	}
}

// The child joins the cgroup before the command runs: the shell writes its own pid, then
// becomes the command.
func TestCgroupWrap(t *testing.T) {
	dir := t.TempDir()
	g := &memoryCgroup{dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := g.wrap("/bin/sh", "-c", `echo $$ > "$0"`, filepath.Join(dir, "pid"))
	out, err := execOutput(argv)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	joined, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	ran, _ := os.ReadFile(filepath.Join(dir, "pid"))
	if len(joined) == 0 || string(joined) != string(ran) {
		t.Errorf("the process that joined (%q) is not the one that ran (%q)", joined, ran)
	}
}

func execOutput(argv []string) ([]byte, error) {
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}
