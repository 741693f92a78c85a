//go:build !unix

package middleman_test

import "testing"

// raiseFDLimit does nothing where there is no RLIMIT_NOFILE.
func raiseFDLimit(testing.TB) {}
