//go:build !race

package integration

// raceEnabled is true in -race builds, whose tests scale their largest
// transfers down: the race detector slows byte-wise code (WebSocket
// masking) tens of times.
const raceEnabled = false
