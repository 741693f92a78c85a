package megaphone

import "time"

// SetRoomRetry sets how long a write that found the buffer full waits
// before it retries on its own, and returns a function that restores it.
// Call it before any gateway of the test starts.
func SetRoomRetry(d time.Duration) (restore func()) {
	old := roomRetry
	roomRetry = d
	return func() { roomRetry = old }
}
