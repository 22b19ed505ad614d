package pgtest

import (
	"os/exec"
	"syscall"
)

// DieWithTest makes the kernel kill the process when the test binary dies without running its
// cleanups (killed, or a closed output pipe), so no server outlives its test.
func DieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
