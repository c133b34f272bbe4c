package e2e

import "syscall"

// dieWithParent makes the kernel kill a child process when the test
// process dies without running its cleanups (a panic, a timeout, a kill).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
