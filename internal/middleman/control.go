package middleman

import (
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Traffic between gateways: REQs handed to a responder, and the control
// subject sb.mm.gw.<gw>.> of each gateway (deliveries to and INTs of one
// connection, answers to its pending requests). Nothing from NATS is
// trusted to name a subject: every subject a gateway publishes to is
// built from an id it parsed ([subjects.ParseMiddlemanRID],
// [subjects.ParseMiddlemanCID]), never taken from a message's reply
// subject, and a message with an id, subject, header or kind no gateway
// makes is dropped and counted.

// Internal NATS headers of middleman traffic between gateways.
const (
	hdrKind = "Mm-Kind" // kind of a control message
	hdrRid  = "Mm-Rid"  // Rid of a REQ or INT: where its answers go
	hdrCid  = "Mm-Cid"  // cid of the sender of a RES
	hdrUID  = "Mm-Uid"  // new uid of an INT
	hdrHop  = "Mm-Hop"  // set when a REQ was handed back to NATS once
	hdrStat = "Status"  // NATS status header (503 = no responders)
)

// Kinds of control messages.
const (
	kindMsg        = "msg"         // MSG:<cid> delivery (wire frame in Data)
	kindInt        = "int"         // set uid of a connection
	kindRes        = "res"         // RES for a pending REQ (wire frame in Data)
	kindGone       = "gone"        // the responder of a REQ disconnected
	kindIntOK      = "int-ok"      // INT applied
	kindIntUnknown = "int-unknown" // INT target not on this gateway
	kindResUnknown = "res-unknown" // a RES (wire frame in Data) found no waiting request
)

// Reasons a message from NATS is refused (metric labels).
const (
	refusedMalformed = "malformed" // id, subject, header or kind that no gateway makes
	refusedUnmatched = "unmatched" // answer for no waiting request: late, repeated or forged
)

// serveRequest gives a REQ to the chosen local responder. Without one (the
// last responder just left) the REQ goes back to NATS once, so another
// gateway's responder can take it; after that the requester is told. A
// REQ without a well-formed Rid is dropped: answers go only to the reply
// subject its Rid names, never to the message's own reply subject.
func (h *Hub) serveRequest(m *nats.Msg, s *Session) {
	r, err := subjects.ParseMiddlemanRID(m.Header.Get(hdrRid))
	if err != nil {
		h.refused(refusedMalformed, "REQ without a valid Rid", err)
		return
	}
	if s != nil && s.serve(r, m.Data) {
		return
	}
	if m.Header.Get(hdrHop) == "" {
		again := &nats.Msg{Subject: m.Subject, Data: m.Data,
			Header: nats.Header{hdrRid: []string{r.RID()}, hdrHop: []string{"1"}}}
		if again.Reply, err = r.Reply(); err == nil && h.nc.PublishMsg(again) == nil {
			return
		}
	}
	h.answer(r, kindGone)
}

// refused drops a message from NATS that no gateway would send, and counts
// it.
func (h *Hub) refused(reason, what string, err error) {
	h.m.refused[reason].Inc()
	h.log.Debug("dropped message from NATS", "what", what, "err", err)
}

// control handles traffic addressed to this gateway: deliveries to and
// INTs of one connection, and answers to a connection's pending requests.
func (h *Hub) control(m *nats.Msg) {
	c, err := subjects.ParseMiddlemanControl(h.gw, m.Subject)
	if err != nil {
		h.refused(refusedMalformed, "control subject", err)
		return
	}
	s := h.session(c.Conn)
	if c.Reply {
		h.reply(m, c, s)
		return
	}
	switch m.Header.Get(hdrKind) {
	case kindMsg:
		if s != nil && s.level != levelSuper {
			s.send(m.Data, "PUB")
		}
	case kindInt:
		h.setUID(m, s)
	case kindResUnknown:
		if s != nil {
			s.unknownRid(m.Data)
		}
	default:
		h.refused(refusedMalformed, "control kind", nil)
	}
}

// reply hands an answer to the pending request of s that the subject
// names. An answer that matches no request (the secret included) is
// dropped and counted; for a RES its sender hears "Unknown Rid".
func (h *Hub) reply(m *nats.Msg, c subjects.MiddlemanControl, s *Session) {
	kind := m.Header.Get(hdrKind)
	if s != nil && s.resolve(c.Seq, c.Secret, kind, m.Header.Get(hdrStat), m.Data) {
		return
	}
	h.refused(refusedUnmatched, "answer", nil)
	if kind != kindRes {
		return
	}
	gw, n, err := subjects.ParseMiddlemanCID(m.Header.Get(hdrCid))
	if err != nil {
		h.refused(refusedMalformed, "RES without a valid sender", err)
		return
	}
	if gw == h.gw {
		if t := h.session(n); t != nil {
			t.unknownRid(m.Data)
		}
		return
	}
	subj, err := subjects.MiddlemanConn(gw, n)
	if err != nil {
		return
	}
	bounce := &nats.Msg{Subject: subj, Data: m.Data, Header: nats.Header{hdrKind: []string{kindResUnknown}}}
	if err := h.nc.PublishMsg(bounce); err != nil {
		h.log.Debug("bounce RES", "err", err)
	}
}

// setUID applies an INT to s and answers the Rid it names. An INT with a
// malformed Rid or a uid that is not one header value is dropped.
func (h *Hub) setUID(m *nats.Msg, s *Session) {
	r, err := subjects.ParseMiddlemanRID(m.Header.Get(hdrRid))
	if err != nil {
		h.refused(refusedMalformed, "INT without a valid Rid", err)
		return
	}
	uid := m.Header.Get(hdrUID)
	if strings.ContainsAny(uid, "\r\n") || !utf8.ValidString(uid) {
		h.refused(refusedMalformed, "INT uid", nil)
		return
	}
	if s == nil {
		h.answer(r, kindIntUnknown)
		return
	}
	s.setUID(uid)
	h.answer(r, kindIntOK)
}

// direct delivers a PUB of MSG:<cid> to the connection cid (a super
// session gets it through its wildcard instead). A cid that is not one of
// ours is just part of an ordinary key.
func (h *Hub) direct(cid string, data []byte) error {
	gw, n, err := subjects.ParseMiddlemanCID(cid)
	if err != nil {
		return nil
	}
	if gw == h.gw {
		if s := h.session(n); s != nil && s.level != levelSuper {
			s.send(data, "PUB")
		}
		return nil
	}
	subj, err := subjects.MiddlemanConn(gw, n)
	if err != nil {
		return nil
	}
	return h.publish(&nats.Msg{Subject: subj, Data: data, Header: nats.Header{hdrKind: []string{kindMsg}}})
}

// answer publishes a control message of kind to request r.
func (h *Hub) answer(r subjects.MiddlemanRequest, kind string) {
	reply, err := r.Reply()
	if err != nil {
		return
	}
	msg := &nats.Msg{Subject: reply, Header: nats.Header{hdrKind: []string{kind}}}
	if err := h.nc.PublishMsg(msg); err != nil {
		h.log.Debug("answer", "kind", kind, "err", err)
	}
}
