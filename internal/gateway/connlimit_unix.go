//go:build unix

package gateway

import "syscall"

// fileLimit is the process's soft limit of open files (the Go runtime
// raised it to the hard limit at start), or 0 if unknown.
func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<31 {
		return 0
	}
	return int(rl.Cur)
}
