package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/neofast/neoauthz/internal/daemon"
)

// Servers under test run in child processes — the loadgen binary started again with childEnv
// set — so that the CPU each one spends is its own and can be read from /proc. A child serves
// on listeners the parent opened (file descriptors 3 and 4), answers control lines on stdin
// (CPU profile start and stop) and exits when its stdin closes, so a parent that dies takes its
// children with it.

// childEnv holds the childSpec (JSON) of a child process.
const childEnv = "NEOAUTHZ_LOADGEN_CHILD"

// Child modes.
const (
	modeCeiling = "ceiling"
	modePDP     = "pdp"
)

// childSpec is what a child serves.
type childSpec struct {
	Mode      string   `json:"mode"`
	AdminURL  string   `json:"admin_url,omitempty"`
	SecretKey string   `json:"secret_key,omitempty"`
	RedisURL  string   `json:"redis_url,omitempty"`
	Routes    string   `json:"routes,omitempty"`
	Issuers   []string `json:"issuers,omitempty"`
	Verbose   bool     `json:"verbose,omitempty"`
	// StreamWorkers is the pdp's server.Config.GRPCStreamWorkers.
	StreamWorkers int `json:"stream_workers,omitempty"`
	// NoDecisionLog turns the pdp's decision log off (it is on by default).
	NoDecisionLog bool `json:"no_decision_log,omitempty"`
	// CacheBytes is the pdp's -cache-max-bytes (0: its default).
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	// MemoryLimit is the pdp's soft memory limit (GOMEMLIMIT; 0: none).
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// AutoMemoryLimit applies the pdp command's -memory-limit=auto (90% of the cgroup's limit).
	AutoMemoryLimit bool `json:"auto_memory_limit,omitempty"`
}

// serveChild is Main in a child process: serve spec until stdin closes or ctx ends.
func serveChild(ctx context.Context, raw string, stdin io.Reader, stdout, stderr io.Writer) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(stderr, "loadgen child:", err)
		return 2
	}
	var lis []net.Listener
	for fd := uintptr(3); fd <= 4; fd++ {
		f := os.NewFile(fd, "listener"+strconv.Itoa(int(fd)))
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener duplicated it
		if err != nil {
			fmt.Fprintln(stderr, "loadgen child: listener:", err)
			return 1
		}
		lis = append(lis, l)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	switch spec.Mode {
	case modeCeiling:
		_ = lis[1].Close()
		s := grpc.NewServer()
		authv3.RegisterAuthorizationServer(s, nopAuthz{})
		go func() {
			<-ctx.Done()
			s.Stop()
		}()
		go func() { done <- s.Serve(lis[0]) }()
	case modePDP:
		cfg, err := spec.pdpConfig()
		if err != nil {
			fmt.Fprintln(stderr, "loadgen child:", err)
			return 2
		}
		level := slog.LevelWarn
		if spec.Verbose {
			level = slog.LevelInfo
		}
		log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
		if spec.AutoMemoryLimit {
			daemon.ApplyMemoryLimit(daemon.MemoryLimit{Auto: true}, log) // as the pdp command does
		}
		go func() { done <- daemon.Serve(ctx, cfg, log, lis[0], lis[1]) }()
	default:
		fmt.Fprintf(stderr, "loadgen child: unknown mode %q\n", spec.Mode)
		return 2
	}
	go func() {
		control(stdin, stdout)
		cancel() // stdin closed: the parent is done or gone
	}()
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		fmt.Fprintln(stderr, "loadgen child:", err)
		return 1
	}
	return 0
}

// control answers the parent's control lines, one "ok" or "error: ..." line each:
// "cpuprofile PATH" starts a CPU profile of this process, "stop" ends it.
func control(stdin io.Reader, stdout io.Writer) {
	sc := bufio.NewScanner(stdin)
	var prof *os.File
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		var err error
		value := ""
		switch {
		case cmd == "heap":
			// The heap in use after a collection, and the live objects in it: what the pdp
			// really keeps.
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			value = " " + strconv.FormatUint(ms.HeapInuse, 10) + " " + strconv.FormatUint(ms.HeapAlloc, 10)
		case cmd == "heapprofile":
			err = writeHeapProfile(arg)
		case cmd == "cpuprofile" && prof == nil:
			if prof, err = os.Create(arg); err == nil {
				if err = pprof.StartCPUProfile(prof); err != nil {
					_ = prof.Close()
					prof = nil
				}
			}
		case cmd == "stop" && prof != nil:
			pprof.StopCPUProfile()
			err = prof.Close()
			prof = nil
		default:
			err = fmt.Errorf("unexpected control line %q", cmd)
		}
		if err != nil {
			fmt.Fprintln(stdout, "error:", err)
		} else {
			fmt.Fprintln(stdout, "ok"+value)
		}
	}
	if prof != nil {
		pprof.StopCPUProfile()
		_ = prof.Close()
	}
}

func (spec childSpec) pdpConfig() (daemon.Config, error) {
	cfg := daemon.DefaultConfig()
	cfg.AdminURL = spec.AdminURL
	cfg.SecretKey = spec.SecretKey
	cfg.RedisURL = spec.RedisURL
	cfg.TrustedIssuers = spec.Issuers
	cfg.Audiences = []string{audience}
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Server.RouteTablePath = spec.Routes
	cfg.Server.GRPCStreamWorkers = spec.StreamWorkers
	cfg.DecisionLog = !spec.NoDecisionLog
	if spec.CacheBytes > 0 {
		cfg.CacheMaxBytes = spec.CacheBytes
	}
	return cfg, cfg.Validate()
}

// childProc is a server under test in a child process.
type childProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	replies  *bufio.Reader
	grpcAddr string
	httpAddr string
	done     chan error
	cgroup   *memoryCgroup // the child's memory cgroup, nil when none
}

// startChild starts the loadgen binary again as a child serving spec on two fresh loopback
// listeners, in cgroup cg when it is not nil; its log lines go to logs.
func startChild(spec childSpec, logs io.Writer, cg *memoryCgroup) (*childProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the loadgen binary: %w", err)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	var addrs []string
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		f, err := l.(*net.TCPListener).File()
		addrs = append(addrs, l.Addr().String())
		_ = l.Close() // the child holds its own copy
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	cmd := exec.Command(self)
	if cg != nil {
		if err := cg.copyBinary(self); err != nil {
			return nil, err
		}
		argv := cg.wrap(cg.exe)
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	if spec.MemoryLimit > 0 {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+strconv.FormatInt(spec.MemoryLimit, 10))
	}
	cmd.ExtraFiles = files
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a %s child: %w", spec.Mode, err)
	}
	c := &childProc{cmd: cmd, stdin: stdin, replies: bufio.NewReader(stdout), grpcAddr: addrs[0], httpAddr: addrs[1],
		done: make(chan error, 1), cgroup: cg}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// stop closes the child's stdin (it shuts down gracefully) and waits, killing it after 20s.
func (c *childProc) stop() {
	_ = c.stdin.Close()
	select {
	case err := <-c.done:
		_ = err // the child's own log has said what went wrong, if anything
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		err := <-c.done
		_ = err
	}
	if c.cgroup != nil {
		c.cgroup.remove()
	}
}

// exited reports the child's exit when it has ended, without waiting.
func (c *childProc) exited() (error, bool) {
	select {
	case err := <-c.done:
		c.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return err, true
	default:
		return nil, false
	}
}

// send writes one control line and reads the reply.
func (c *childProc) send(line string) error {
	_, err := c.ask(line)
	return err
}

// ask writes one control line and returns what follows "ok" in the reply.
func (c *childProc) ask(line string) (string, error) {
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return "", err
	}
	reply, err := c.replies.ReadString('\n')
	if err != nil {
		return "", err
	}
	reply = strings.TrimSpace(reply)
	if value, ok := strings.CutPrefix(reply, "ok"); ok && (value == "" || value[0] == ' ') {
		return strings.TrimSpace(value), nil
	}
	return "", errors.New(reply)
}

// cpu is the CPU time (user + system) the child has used so far, from /proc/<pid>/stat.
func (c *childProc) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on every Linux ABI).
const clockTick = 10 * time.Millisecond

// procCPU reads utime + stime of process pid (Linux only).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU takes utime and stime (fields 14 and 15) from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may hold spaces, so fields count from the last ')'.
func parseProcStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11]; stime f[12].
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("/proc stat: utime or stime is not a number")
	}
	return time.Duration(u+s) * clockTick, nil
}

// writeHeapProfile writes this process's heap profile, after a collection, to path.
func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(out)
}
