//go:build !linux

package stripemock

import "syscall"

// sysProcAttr: only Linux can tie the child's life to the parent's.
func sysProcAttr() *syscall.SysProcAttr { return nil }
