package loadgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/neofast/neoauthz/internal/daemon"
)

// memoryCgroup is a memory cgroup made for one pdp child: the pdp runs under a memory limit as
// in a container, the kernel reclaiming what it can (the binary's file pages first) and killing
// the process if it cannot stay within the limit. Making one needs root and a writable cgroup
// hierarchy (cgroup v1's memory controller, or v2 with the memory controller enabled for the
// load tool's own cgroup's children).
type memoryCgroup struct {
	dir   string
	limit int64
	exe   string // the child's own copy of the loadgen binary; "" until copyBinary
}

// newMemoryCgroup makes a cgroup named name under the load tool's own memory cgroup, limited
// to limit bytes.
func newMemoryCgroup(name string, limit int64) (*memoryCgroup, error) {
	parent, limitFile, err := daemon.MemoryCgroupDir()
	if err != nil {
		return nil, fmt.Errorf("memory cgroup: %w", err)
	}
	if parent == "" {
		return nil, errors.New("memory cgroup: this process is in no memory cgroup (not Linux, or no cgroup hierarchy)")
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("memory cgroup: %w (it needs root and a writable cgroup hierarchy)", err)
	}
	g := &memoryCgroup{dir: dir, limit: limit}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		g.remove()
		return nil, fmt.Errorf("memory cgroup: set its limit: %w (with cgroup v2, is the memory controller enabled in %s/cgroup.subtree_control?)", err, parent)
	}
	return g, nil
}

// wrap returns the arguments of a command that joins the cgroup and then executes argv: the
// child is in the cgroup from its first instruction, so its -memory-limit=auto finds the limit.
func (g *memoryCgroup) wrap(argv ...string) []string {
	return append([]string{"/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, g.dir}, argv...)
}

// cgroupUsage is what the kernel recorded of a cgroup's memory.
type cgroupUsage struct {
	peak     int64 // the highest usage (RSS and the page cache charged to it)
	oomKills int64 // processes the kernel killed for the limit
}

// usage reads the cgroup's peak usage (v1 memory.max_usage_in_bytes, v2 memory.peak) and its
// OOM kill count (v1 memory.oom_control, v2 memory.events).
func (g *memoryCgroup) usage() (cgroupUsage, error) {
	var u cgroupUsage
	peak, err := g.readFirst("memory.max_usage_in_bytes", "memory.peak")
	if err != nil {
		return u, err
	}
	if u.peak, err = strconv.ParseInt(strings.TrimSpace(peak), 10, 64); err != nil {
		return u, fmt.Errorf("memory cgroup: peak usage %q: %w", peak, err)
	}
	events, err := g.readFirst("memory.oom_control", "memory.events")
	if err != nil {
		return u, err
	}
	for line := range strings.SplitSeq(events, "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			if u.oomKills, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				return u, fmt.Errorf("memory cgroup: oom_kill %q: %w", v, err)
			}
		}
	}
	return u, nil
}

// readFirst reads the first of the cgroup's files that exists (v1 and v2 name them apart).
func (g *memoryCgroup) readFirst(names ...string) (string, error) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(g.dir, n))
		if err == nil {
			return string(b), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("memory cgroup: %w", err)
		}
	}
	return "", fmt.Errorf("memory cgroup: %s has none of %s", g.dir, strings.Join(names, ", "))
}

// copyBinary gives the child its own copy of the binary self, none of it in the page cache. The
// kernel charges a file page to the cgroup that first reads it: a child running the parent's
// binary would find its code already read and charged to the parent, and would be measured
// without it, unlike a pdp in a container.
func (g *memoryCgroup) copyBinary(self string) error {
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.CreateTemp("", "neoauthz-loadgen-pdp-")
	if err != nil {
		return err
	}
	g.exe = dst.Name()
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync() // written back, so that the pages can be dropped
	}
	if err == nil {
		err = unix.Fadvise(int(dst.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	if err == nil {
		err = dst.Chmod(0o755)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("memory cgroup: copy the binary: %w", err)
	}
	return nil
}

// removeBinary deletes the binary's copy (a started child keeps it open).
func (g *memoryCgroup) removeBinary() {
	if g.exe != "" {
		_ = os.Remove(g.exe)
	}
}

// remove deletes the cgroup, once its processes have exited, and the binary's copy.
func (g *memoryCgroup) remove() {
	_ = os.Remove(g.dir)
	g.removeBinary()
}
