package middleman

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Commands of the protocol.
const (
	cmdPUB = "PUB"
	cmdSUB = "SUB"
	cmdUNS = "UNS"
	cmdREQ = "REQ"
	cmdRES = "RES"
	cmdINT = "INT"
	intUID = "UID"
)

// handle executes one frame. A returned error is answered with PUB ERROR.
// A key over [MaxKeyLen] is refused first, whatever the command, so no
// trust lookup, subject or NATS call ever sees it.
func (s *Session) handle(ctx context.Context, f *Frame) error {
	if len(f.Key) > MaxKeyLen {
		return cmdErr(f, ErrKeyTooLong)
	}
	switch f.Cmd {
	case cmdPUB:
		return s.pub(ctx, f)
	case cmdSUB:
		return s.sub(ctx, f)
	case cmdUNS:
		s.uns(f)
		return nil
	case cmdREQ:
		return s.req(ctx, f)
	case cmdRES:
		return s.res(f)
	case CmdEPUB, CmdESUB:
		return s.enable(ctx, f)
	case CmdEREQ:
		return s.ereq(ctx, f)
	case cmdINT:
		return s.interrupt(f)
	}
	return cmdErr(f, ErrUnknownCommand)
}

// allowed checks that the session may use f: trusted sessions may do
// anything, untrusted ones only what enable (EPUB, ESUB, EREQ) granted.
func (s *Session) allowed(ctx context.Context, f *Frame, enable string) error {
	if s.trusted() {
		return nil
	}
	ok, err := s.hub.trust.Enabled(ctx, enable, f.Key, s.mayLookup())
	if err != nil {
		return cmdErr(f, err)
	}
	if !ok {
		return cmdErr(f, ErrNotTrusted)
	}
	return nil
}

// Bucket reads on a trust miss are limited per connection, so a client
// hammering keys it may not use cannot turn each frame into a KV request.
const (
	lookupsPerWindow = 20
	lookupWindow     = time.Second
)

// mayLookup reports whether this miss may read the bucket (read loop only).
func (s *Session) mayLookup() bool {
	now := time.Now()
	if now.Sub(s.lookupStart) > lookupWindow {
		s.lookupStart, s.lookups = now, 0
	}
	s.lookups++
	return s.lookups <= lookupsPerWindow
}

// subjectErr maps a failure to build a subject from a key: a key too long
// is the client's error, anything else ours.
func subjectErr(err error) error {
	if errors.Is(err, subjects.ErrTooLong) {
		return fmt.Errorf("%w: %v", ErrKeyTooLong, err)
	}
	return fmt.Errorf("%w: %v", ErrInternal, err)
}

// relayed stamps the sender's Cid and Uid on f and returns its wire form.
func (s *Session) relayed(f *Frame) []byte {
	f.Set(HeaderCid, s.cid)
	f.Set(HeaderUid, s.UID())
	return f.Bytes()
}

// pub publishes to every subscriber of the key on any gateway; a private
// key MSG:<cid> also reaches its connection.
func (s *Session) pub(ctx context.Context, f *Frame) error {
	if err := s.allowed(ctx, f, CmdEPUB); err != nil {
		return err
	}
	subj, err := subjects.MiddlemanPub(f.Key)
	if err != nil {
		return cmdErr(f, subjectErr(err))
	}
	f.Del(HeaderRid) // only the server sets a Rid, on REQ
	data := s.relayed(f)
	if err := s.hub.publish(&nats.Msg{Subject: subj, Data: data}); err != nil {
		return cmdErr(f, err)
	}
	if cid, ok := strings.CutPrefix(f.Key, privatePrefix); ok {
		if err := s.hub.direct(cid, data); err != nil {
			return cmdErr(f, err)
		}
	}
	return nil
}

func (s *Session) sub(ctx context.Context, f *Frame) error {
	if err := s.allowed(ctx, f, CmdESUB); err != nil {
		return err
	}
	if s.level == levelSuper || f.Key == privatePrefix+s.cid {
		return nil // already receives it
	}
	if _, ok := s.keys[f.Key]; ok {
		return nil
	}
	created, err := s.hub.join(s, f.Key)
	if err != nil {
		return cmdErr(f, err)
	}
	if s.keys == nil {
		s.keys = map[string]struct{}{}
	}
	s.keys[f.Key] = struct{}{}
	if created {
		s.hub.flush()
	}
	return nil
}

func (s *Session) uns(f *Frame) {
	if _, ok := s.keys[f.Key]; !ok {
		return
	}
	delete(s.keys, f.Key)
	s.hub.leave(s, f.Key)
}

// req sends f to exactly one responder of the key, with a server-assigned
// Rid, and awaits its RES within the request timeout.
func (s *Session) req(ctx context.Context, f *Frame) error {
	if err := s.allowed(ctx, f, CmdEREQ); err != nil {
		return err
	}
	subj, err := subjects.MiddlemanReq(f.Key)
	if err != nil {
		return cmdErr(f, subjectErr(err))
	}
	r, err := s.await(f.Cmd, f.Key)
	if err != nil {
		return cmdErr(f, err)
	}
	rid := r.RID()
	f.Set(HeaderRid, rid)
	msg := &nats.Msg{Subject: subj, Data: s.relayed(f), Header: nats.Header{hdrRid: []string{rid}}}
	return s.publishAwaited(f, r, msg)
}

// publishAwaited publishes msg, the question of pending request r, with
// r's reply subject (where NATS also reports that nobody listens).
func (s *Session) publishAwaited(f *Frame, r subjects.MiddlemanRequest, msg *nats.Msg) error {
	reply, err := r.Reply()
	if err == nil {
		msg.Reply = reply
		err = s.hub.publish(msg)
	}
	if err != nil {
		if p := s.take(r.Seq); p != nil {
			p.timer.Stop()
		}
		return cmdErr(f, err)
	}
	return nil
}

// res routes f, without its Rid, to the requester the Rid names, on
// whichever gateway. The requester's gateway delivers it only when that
// request still waits under that secret; otherwise the sender hears
// "Unknown Rid" (at once when the requester is local, else from the
// requester's gateway).
func (s *Session) res(f *Frame) error {
	if !s.trusted() {
		return cmdErr(f, ErrNotTrusted)
	}
	rid, ok := f.Lookup(HeaderRid)
	if !ok {
		return cmdErr(f, ErrMissingHeader)
	}
	r, err := subjects.ParseMiddlemanRID(rid)
	if err != nil {
		return cmdErr(f, ErrBadRid)
	}
	s.forget(rid)
	f.Del(HeaderRid)
	data := s.relayed(f)
	if r.Gateway == s.hub.gw {
		if t := s.hub.session(r.Conn); t == nil || !t.resolve(r.Seq, r.Secret, kindRes, "", data) {
			return cmdErr(f, ErrBadRid)
		}
		return nil
	}
	reply, err := r.Reply()
	if err != nil {
		return cmdErr(f, ErrBadRid)
	}
	msg := &nats.Msg{Subject: reply, Data: data,
		Header: nats.Header{hdrKind: []string{kindRes}, hdrCid: []string{s.cid}}}
	if err := s.hub.publish(msg); err != nil {
		return cmdErr(f, err)
	}
	return nil
}

// unknownRid tells the sender of a RES (data is the frame as relayed) that
// its Rid named no waiting request.
func (s *Session) unknownRid(data []byte) {
	f, err := Parse(data)
	if err != nil || f.Cmd != cmdRES {
		s.hub.refused(refusedMalformed, "bounced RES", err)
		return
	}
	s.refuse(&CommandError{Cmd: cmdRES, Key: f.Key, Err: ErrBadRid})
}

// enable records EPUB or ESUB for the key, cluster-wide and durably.
func (s *Session) enable(ctx context.Context, f *Frame) error {
	if !s.trusted() {
		return cmdErr(f, ErrNotTrusted)
	}
	if err := s.hub.trust.Enable(ctx, f.Cmd, f.Key); err != nil {
		return cmdErr(f, err)
	}
	return nil
}

// ereq enables REQ of the key for untrusted clients and makes this session
// one of its responders.
func (s *Session) ereq(ctx context.Context, f *Frame) error {
	if err := s.enable(ctx, f); err != nil {
		return err
	}
	if _, ok := s.serving[f.Key]; ok {
		return nil
	}
	created, err := s.hub.startServing(s, f.Key)
	if err != nil {
		return cmdErr(f, err)
	}
	if s.serving == nil {
		s.serving = map[string]struct{}{}
	}
	s.serving[f.Key] = struct{}{}
	if created {
		s.hub.flush()
	}
	return nil
}

// interrupt handles INT UID: set the uid (Setuid) of the connection Forcid,
// on any gateway.
func (s *Session) interrupt(f *Frame) error {
	if !s.trusted() {
		return cmdErr(f, ErrNotTrusted)
	}
	if f.Key != intUID {
		return cmdErr(f, ErrUnknownCommand)
	}
	forcid, ok := f.Lookup(HeaderForcid)
	if !ok {
		return cmdErr(f, ErrMissingHeader)
	}
	uid, ok := f.Lookup(HeaderSetuid)
	if !ok {
		return cmdErr(f, ErrMissingHeader)
	}
	gw, n, err := subjects.ParseMiddlemanCID(forcid)
	if err != nil {
		return cmdErr(f, ErrUnknownCID)
	}
	if gw == s.hub.gw {
		t := s.hub.session(n)
		if t == nil {
			return cmdErr(f, ErrUnknownCID)
		}
		t.setUID(uid)
		return nil
	}
	subj, err := subjects.MiddlemanConn(gw, n)
	if err != nil {
		return cmdErr(f, ErrUnknownCID)
	}
	r, err := s.await(f.Cmd, f.Key)
	if err != nil {
		return cmdErr(f, err)
	}
	msg := &nats.Msg{Subject: subj, Header: nats.Header{hdrKind: []string{kindInt},
		hdrUID: []string{uid}, hdrRid: []string{r.RID()}}}
	return s.publishAwaited(f, r, msg)
}
