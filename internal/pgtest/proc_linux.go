package pgtest

import (
	"os/exec"
	"syscall"
)

// DieWithTest makes the kernel kill cmd's process when the test binary dies without running its
// cleanups (killed, or a closed output pipe), so no server outlives its test.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
