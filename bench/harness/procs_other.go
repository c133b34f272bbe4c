//go:build !linux

package harness

import "syscall"

// setParentDeath does nothing where the kernel has no parent-death signal;
// the harness stops its children itself on every normal exit.
func setParentDeath(*syscall.SysProcAttr) {}
