//go:build !unix

package integration

import "time"

// cpuTime is 0 where there is no getrusage: the benchmarks then report
// no CPU per request.
func cpuTime() time.Duration { return 0 }
