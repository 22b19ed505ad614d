package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// MemoryLimitFraction is the share of the container's memory limit that -memory-limit=auto
// gives the Go runtime as its soft limit, once the binary's file-backed pages are taken out:
// the rest is room for what the runtime does not count (thread stacks outside the heap's
// accounting, cgroup page cache) before the kernel's OOM killer would act.
//
// The binary's code and read-only data are mapped from its file, which the runtime's limit
// does not count but the container's does. A pdp's binary has about 25 MiB of them resident
// once it has started; a 128 MiB container whose Go heap was allowed 90% of the whole limit
// left its code too little room and spent its time reading it back from disk (major faults),
// so auto leaves room for them as measured at start.
const MemoryLimitFraction = 0.9

// memoryLimitEnv and memoryLimitUsage describe the -memory-limit flag of the pdp and of its relay.
const (
	memoryLimitEnv   = "NEOAUTHZ_MEMORY_LIMIT"
	memoryLimitUsage = "the Go runtime's soft memory limit: auto (90% of what the cgroup's memory limit leaves beside the binary's resident file pages, none without a limit), off, or a size like 120MiB; a GOMEMLIMIT in the environment takes precedence"
)

// MemoryLimit is the -memory-limit setting: auto (a share of the cgroup's memory limit), off,
// or a size.
type MemoryLimit struct {
	Auto  bool
	Bytes int64 // when not Auto: the soft limit, 0 for off
}

// ParseMemoryLimit reads "auto", "off" or a size (ParseBytes; at least 1MiB).
func ParseMemoryLimit(s string) (MemoryLimit, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		return MemoryLimit{Auto: true}, nil
	case "off", "0":
		return MemoryLimit{}, nil
	}
	n, err := ParseBytes(s)
	if err != nil {
		return MemoryLimit{}, fmt.Errorf("%w, auto or off", err)
	}
	if n < 1<<20 {
		return MemoryLimit{}, fmt.Errorf("memory limit %q: use at least 1MiB, auto or off", s)
	}
	return MemoryLimit{Bytes: n}, nil
}

func (m MemoryLimit) String() string {
	switch {
	case m.Auto:
		return "auto"
	case m.Bytes == 0:
		return "off"
	}
	return strconv.FormatInt(m.Bytes, 10)
}

// memoryLimitPlan is what ApplyMemoryLimit does: set limit (when set), and why.
type memoryLimitPlan struct {
	limit  int64  // the soft limit to set, 0 for none
	set    bool   // whether to call debug.SetMemoryLimit
	source string // where the value comes from, for the log
	cgroup int64  // the cgroup's limit, when one was read
	file   int64  // the process's file-backed resident memory (RssFile), when auto read it
	err    error  // a cgroup file that could not be read or parsed
}

// planMemoryLimit decides the soft limit: an operator's GOMEMLIMIT always wins (the runtime
// has already applied it), then an explicit size, then with auto the cgroup's limit (read
// under root, "/" outside tests), less the process's file-backed resident memory (but never
// below half the limit), times MemoryLimitFraction.
func planMemoryLimit(m MemoryLimit, gomemlimit string, root string) memoryLimitPlan {
	switch {
	case gomemlimit != "":
		return memoryLimitPlan{source: "GOMEMLIMIT"}
	case !m.Auto && m.Bytes == 0:
		return memoryLimitPlan{source: "off"}
	case !m.Auto:
		return memoryLimitPlan{limit: m.Bytes, set: true, source: "flag"}
	}
	limit, src, err := cgroupMemoryLimit(root)
	if err != nil || limit == 0 {
		return memoryLimitPlan{source: "auto: no cgroup memory limit", err: err}
	}
	file := fileResident(root)
	avail := max(limit-file, limit/2)
	return memoryLimitPlan{limit: int64(float64(avail) * MemoryLimitFraction), set: true, source: "auto: " + src, cgroup: limit, file: file}
}

// fileResident is the process's file-backed resident memory (RssFile in /proc/self/status,
// under root), 0 when it cannot be read.
func fileResident(root string) int64 {
	v, err := ProcStatus(filepath.Join(root, "proc/self/status"), "RssFile")
	if err != nil {
		return 0
	}
	return v[0]
}

// ProcStatus reads fields of a Linux /proc/<pid>/status file at path (VmRSS, VmHWM, RssFile:
// the ones given in kB) and returns them in bytes, in the order asked; a field the file lacks
// or that is not a size is an error.
func ProcStatus(path string, fields ...string) ([]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(fields))
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		i := slices.Index(fields, name)
		if !ok || i < 0 {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil || kb < 0 {
			return nil, fmt.Errorf("%s: %s %q is not a size", path, name, truncate(strings.TrimSpace(v), 40))
		}
		out[i] = kb << 10
		found++
	}
	if found < len(fields) {
		return nil, fmt.Errorf("%s lacks some of %s", path, strings.Join(fields, ", "))
	}
	return out, nil
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit as m says (never overriding a
// GOMEMLIMIT in the environment) and logs once what it is and where it came from. The Go
// collector exports the limit in force as go_gc_gomemlimit_bytes.
func ApplyMemoryLimit(m MemoryLimit, log *slog.Logger) {
	p := planMemoryLimit(m, os.Getenv("GOMEMLIMIT"), "/")
	if p.set {
		debug.SetMemoryLimit(p.limit)
	}
	attrs := []any{"source", p.source}
	if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
		attrs = append(attrs, "limit_bytes", cur)
	} else {
		attrs = append(attrs, "limit", "none")
	}
	if p.cgroup > 0 {
		attrs = append(attrs, "cgroup_limit_bytes", p.cgroup, "file_backed_bytes", p.file, "fraction", MemoryLimitFraction)
	}
	if p.err != nil {
		log.Warn("memory limit: the cgroup's memory limit could not be read; no soft limit set", append(attrs, "err", p.err)...)
		return
	}
	log.Info("memory limit", attrs...)
}

// cgroupMemoryLimit returns the memory limit of the cgroup this process runs in (the lowest
// along its path to the hierarchy's root), 0 when there is none; src names the file read.
// cgroup v2 (memory.max) is tried first, then v1 (memory.limit_in_bytes). root prefixes every
// path read.
func cgroupMemoryLimit(root string) (limit int64, src string, err error) {
	mount, path, file, err := memoryCgroup(root)
	if err != nil || mount == "" {
		return 0, "", err
	}
	return lowestLimit(mount, path, file)
}

// memoryCgroup finds this process's memory cgroup: the hierarchy's mount (under root), the
// cgroup's path in it and the name of its limit file; mount is "" when there is none.
func memoryCgroup(root string) (mount, path, file string, err error) {
	b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", "", nil // not Linux, or no /proc: no cgroup to read
		}
		return "", "", "", err
	}
	var v1Path, v2Path string
	v2 := false
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, v2Path = true, parts[2]
		case containsController(parts[1], "memory"):
			v1Path = parts[2]
		}
	}
	switch {
	case v1Path != "":
		return filepath.Join(root, "sys/fs/cgroup/memory"), v1Path, "memory.limit_in_bytes", nil
	case v2:
		return filepath.Join(root, "sys/fs/cgroup"), v2Path, "memory.max", nil
	}
	return "", "", "", nil
}

// MemoryCgroupDir returns the directory of this process's memory cgroup and the name of its
// limit file (memory.limit_in_bytes for cgroup v1, memory.max for v2); dir is "" when the
// process has none. Where the mount lacks the path /proc/self/cgroup names (cgroup namespaces),
// the mount is the process's cgroup.
func MemoryCgroupDir() (dir, limitFile string, err error) {
	mount, path, file, err := memoryCgroup("/")
	if err != nil || mount == "" {
		return "", "", err
	}
	return cgroupDir(mount, path), file, nil
}

// cgroupDir is the directory of cgroup path under mount, or mount when it has no such path.
func cgroupDir(mount, path string) string {
	dir := filepath.Join(mount, filepath.Clean("/"+path))
	if _, err := os.Stat(dir); err != nil {
		return mount
	}
	return dir
}

func containsController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// cgroupUnlimited is the least value cgroup v1 uses for "no limit" (the largest page-aligned
// int64, 9223372036854771712, or near it): anything this large bounds nothing.
const cgroupUnlimited = 1 << 62

// lowestLimit reads file in the cgroup directory mount/path and in each parent up to mount,
// and returns the lowest limit found. A container usually sees its own cgroup at the mount
// (cgroup namespaces) while /proc/self/cgroup may name a path the mount does not have: the
// walk then starts at the mount. "max" (v2) and v1's huge values mean no limit; anything else
// that is not a number is an error.
func lowestLimit(mount, path, file string) (limit int64, src string, err error) {
	dir := cgroupDir(mount, path)
	for {
		f := filepath.Join(dir, file)
		b, rerr := os.ReadFile(f)
		switch {
		case errors.Is(rerr, os.ErrNotExist):
		case rerr != nil:
			return 0, "", rerr
		default:
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, perr := strconv.ParseInt(s, 10, 64)
				if perr != nil || n <= 0 {
					return 0, "", fmt.Errorf("%s: %q is not a memory limit", f, truncate(s, 40))
				}
				if n < cgroupUnlimited && (limit == 0 || n < limit) {
					limit, src = n, f
				}
			}
		}
		if dir == mount || len(dir) <= len(mount) {
			break
		}
		dir = filepath.Dir(dir)
	}
	return limit, src, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
