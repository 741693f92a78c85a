package middleman

import (
	"crypto/rand"
	"crypto/subtle"
	"time"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Requests of a session: those it asked (REQ, an INT for another gateway)
// and awaits an answer to, and the REQs it was handed as responder.

// pending is a REQ or remote INT of this session awaiting its answer. Only
// an answer that names its secret counts.
type pending struct {
	cmd, key string
	secret   string
	timer    *time.Timer
}

// served is a REQ handed to this session as responder, awaiting its RES.
type served struct {
	req   subjects.MiddlemanRequest
	timer *time.Timer
}

// maxPending bounds the REQs and INTs one connection may have awaiting
// an answer.
const maxPending = 4096

// await starts a request of this session (a REQ, or an INT for another
// gateway) that awaits its answer within the request timeout: it gets the
// next number and a fresh 128-bit secret, so its Rid cannot be guessed.
// It refuses when the connection already waits for maxPending answers.
// Read loop only.
func (s *Session) await(cmd, key string) (subjects.MiddlemanRequest, error) {
	s.seq++
	r := subjects.MiddlemanRequest{Gateway: s.hub.gw, Conn: s.n, Seq: s.seq, Secret: rand.Text()}
	p := &pending{cmd: cmd, key: key, secret: r.Secret}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return r, nil
	}
	if len(s.pending) >= maxPending {
		return r, ErrTooManyPending
	}
	if s.pending == nil {
		s.pending = map[uint64]*pending{}
	}
	s.pending[r.Seq] = p
	p.timer = time.AfterFunc(s.hub.cfg.RequestTimeout, func() {
		if s.take(r.Seq) != nil {
			s.refuse(&CommandError{Cmd: cmd, Key: key, Err: ErrTimeout})
		}
	})
	return r, nil
}

// take removes and returns pending request seq, or nil: a request is
// answered at most once.
func (s *Session) take(seq uint64) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[seq]
	delete(s.pending, seq)
	return p
}

// claim is take for an answer from outside: it removes request seq only
// when secret is its secret.
func (s *Session) claim(seq uint64, secret string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[seq]
	if p == nil || subtle.ConstantTimeCompare([]byte(p.secret), []byte(secret)) != 1 {
		return nil
	}
	delete(s.pending, seq)
	return p
}

// resolve handles an answer to pending request seq. It reports false, and
// does nothing, when no request waits under that number and secret.
func (s *Session) resolve(seq uint64, secret, kind, status string, data []byte) bool {
	p := s.claim(seq, secret)
	if p == nil {
		return false
	}
	p.timer.Stop()
	if kind == kindRes && p.cmd == cmdREQ {
		s.send(data, "RES")
		return true
	}
	if err := outcome(p.cmd, kind, status); err != nil {
		s.refuse(&CommandError{Cmd: p.cmd, Key: p.key, Err: err})
	}
	return true
}

// outcome is the error an answer other than a RES means for cmd.
func outcome(cmd, kind, status string) error {
	switch {
	case kind == kindIntOK:
		return nil
	case kind == kindIntUnknown, cmd == cmdINT && status == "503":
		return ErrUnknownCID
	case status == "503":
		return ErrNoResponder
	}
	return ErrResponderGone
}

// serve hands REQ r to this session as responder. It reports false when
// the session is ending.
func (s *Session) serve(r subjects.MiddlemanRequest, data []byte) bool {
	rid := r.RID()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.served == nil {
		s.served = map[string]*served{}
	}
	sv := &served{req: r}
	s.served[rid] = sv
	sv.timer = time.AfterFunc(s.hub.cfg.RequestTimeout, func() { s.forget(rid) })
	s.mu.Unlock()
	if !s.send(data, "REQ") {
		s.forget(rid)
		return false
	}
	return true
}

// forget drops a served request (answered or expired).
func (s *Session) forget(rid string) {
	s.mu.Lock()
	sv := s.served[rid]
	delete(s.served, rid)
	s.mu.Unlock()
	if sv != nil {
		sv.timer.Stop()
	}
}
