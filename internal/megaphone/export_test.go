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

// SetMaxOpening sets how many polls a gateway opens at once (see
// maxOpening) and returns a function that restores it. Call it before any
// gateway of the test starts.
func SetMaxOpening(n int) (restore func()) {
	old := maxOpening
	maxOpening = n
	return func() { maxOpening = old }
}

// QueuedPolls is how many polls waited for an opening slot after being
// taken over from net/http, in this process.
func QueuedPolls() int64 { return queuedPolls.Load() }
