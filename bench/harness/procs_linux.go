package harness

import "syscall"

// setParentDeath makes the kernel kill the child when the harness dies, so
// that an interrupted run leaves no nats-server or service behind.
func setParentDeath(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
