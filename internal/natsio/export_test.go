package natsio

// Arrived reports the pieces received and not yet handed out, and whether
// the stream's end has arrived: tests wait for it instead of sleeping.
func (r *Receiver) Arrived() (pieces int, eof bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pieces = len(r.queue)
	if len(r.cur) > 0 {
		pieces++
	}
	return pieces, r.eof
}

// Released reports whether the sender stopped its heartbeat and control
// subscription.
func (s *Sender) Released() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}
