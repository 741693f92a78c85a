//go:build unix

package megaphone_test

import "syscall"

// openFileLimit is the soft limit of open files, 0 if unknown.
func openFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<31 {
		return 0
	}
	return int(lim.Cur)
}
