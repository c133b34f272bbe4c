package stripemock

import "syscall"

// sysProcAttr makes the kernel kill stripe-mock when the test process dies
// without running its cleanups (a panic in another goroutine, a kill).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
