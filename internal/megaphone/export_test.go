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

// SetPurge sets when a poll removes delivered events (see purgeEvery):
// after every events (share = 0: even beyond a quarter of the buffer) or
// delay after the first, and returns a function that restores it. Call it
// before any gateway of the test starts.
func SetPurge(every, share int, delay time.Duration) (restore func()) {
	e, s, d := purgeEvery, purgeShare, purgeDelay
	purgeEvery, purgeShare, purgeDelay = every, share, delay
	return func() { purgeEvery, purgeShare, purgeDelay = e, s, d }
}
