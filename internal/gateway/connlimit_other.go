//go:build !unix

package gateway

// fileLimit is 0 (unknown) where there is no RLIMIT_NOFILE: the default
// http.max_conns is then no cap.
func fileLimit() int { return 0 }
