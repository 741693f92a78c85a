//go:build unix

package middleman_test

import (
	"syscall"
	"testing"
)

// raiseFDLimit raises the soft limit of open files to the hard one; tb
// nil (a child process) ignores a failure.
func raiseFDLimit(tb testing.TB) {
	var lim syscall.Rlimit
	err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if err == nil {
		lim.Cur = lim.Max
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if err != nil && tb != nil {
		tb.Fatal(err)
	}
}
