package natsio

import (
	"context"
	"io"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Receiver is the reading end of a stream. It implements io.ReadCloser.
type Receiver struct {
	nc   *nats.Conn
	ctx  context.Context
	opts Options
	subj string
	sub  *nats.Subscription

	notify chan struct{}
	stop   chan struct{}

	mu        sync.Mutex
	queue     [][]byte
	cur       []byte
	ctl       string
	nextSeq   uint64
	consumed  int64
	granted   int64
	eof       bool
	doneSent  bool
	err       error
	lastHeard time.Time
	closed    bool
	hbStarted bool
	trailer   []byte
}

var _ io.ReadCloser = (*Receiver)(nil)

// NewReceiver subscribes to a fresh inbox. Reads fail with ctx's error once
// ctx ends; until the sender's hello arrives only ctx bounds the wait.
func NewReceiver(ctx context.Context, nc *nats.Conn, opts Options) (*Receiver, error) {
	if opts.CheckPeer == nil {
		return nil, ErrNoCheck
	}
	r := &Receiver{
		nc:     nc,
		ctx:    ctx,
		opts:   opts.withDefaults(nc.MaxPayload()),
		subj:   opts.inbox(nc),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	r.granted = int64(r.opts.Window)
	sub, err := nc.Subscribe(r.subj, r.handle)
	if err != nil {
		return nil, err
	}
	// Flow control bounds what is queued; the limits only guard against a
	// misbehaving sender.
	_ = sub.SetPendingLimits(1<<16, int(r.opts.Window)*2+(8<<20))
	r.sub = sub
	// Make sure the server knows the subscription before the subject is
	// handed to a sender.
	if err := nc.FlushTimeout(r.opts.PeerTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return r, nil
}

// Subject is the subject the sender must open the stream on.
func (r *Receiver) Subject() string { return r.subj }

// Connected reports whether a sender's hello was accepted. A sender
// reports its stream started only after its hello was answered, so a peer
// that claims so while Connected is false is lying.
func (r *Receiver) Connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctl != ""
}

func (r *Receiver) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *Receiver) handle(m *nats.Msg) {
	h := m.Header
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.lastHeard = time.Now()
	switch {
	case h.Get(hdrHello) != "":
		if r.ctl != "" || r.err != nil {
			return
		}
		ctl := h.Get(hdrCtl)
		err := r.opts.checkPeer(ctl)
		if err == nil {
			err = r.opts.checkPeer(m.Reply)
		}
		if err != nil {
			// Answer nothing: the peer chose where the answer would go.
			r.fail(err)
			return
		}
		r.ctl = ctl
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(hdrCredit, strconv.FormatInt(r.granted, 10))
		_ = r.nc.PublishMsg(reply)
		if !r.hbStarted {
			r.hbStarted = true
			go r.heartbeat()
		}
		return
	case h.Get(hdrHB) != "":
		return
	}
	if r.err != nil {
		return
	}
	if h.Get(hdrSeq) != strconv.FormatUint(r.nextSeq, 10) {
		r.fail(ErrProtocol)
		return
	}
	r.nextSeq++
	if h.Get(hdrTrail) != "" && h.Get(hdrEOF) != "" {
		r.trailer = m.Data
	} else if len(m.Data) > 0 {
		r.queue = append(r.queue, m.Data)
	}
	if reason := h.Get(hdrErr); reason != "" {
		r.fail(&RemoteError{Reason: reason})
		return
	}
	if h.Get(hdrEOF) != "" {
		r.eof = true
	}
	r.signal()
}

// fail records the first terminal error. r.mu must be held.
func (r *Receiver) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.signal()
}

// heartbeat re-announces the credit while the stream is open (the
// sender's keep-alive) and detects a silent sender.
func (r *Receiver) heartbeat() {
	t := time.NewTicker(r.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if time.Since(r.lastHeard) > r.opts.PeerTimeout && !r.eof {
			r.fail(ErrPeerLost)
		}
		ctl, granted := r.ctl, r.granted
		r.mu.Unlock()
		r.sendCtl(ctl, hdrCredit, strconv.FormatInt(granted, 10))
	}
}

func (r *Receiver) sendCtl(ctl, key, val string) {
	if ctl == "" {
		return
	}
	m := nats.NewMsg(ctl)
	m.Header.Set(key, val)
	_ = r.nc.PublishMsg(m)
}

// Read reads stream data; it returns io.EOF at a clean end, or the error
// that ended the stream.
func (r *Receiver) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := r.take(len(p))
	return copy(p, b), err
}

// Flusher is a writer that [Receiver.WriteTo] flushes: an HTTP response
// whose client has to see each piece of a stream as it is produced.
type Flusher interface{ Flush() error }

// WriteTo implements [io.WriterTo]: it writes the stream's data to w piece
// by piece as it arrived (each piece one w.Write of a NATS message's
// payload, not copied: w may keep it), until the stream's clean end (nil)
// or the error that ended it, or w's error. Each piece counts as read
// once it is handed to w, so its credit goes back to the sender.
//
// If w is a [Flusher], WriteTo flushes it after a piece when no further
// data and not the stream's end has arrived by then: the reader of w sees
// the stream as it is produced, with one flush per burst instead of one
// per piece, and none after a last piece whose end had arrived (the end of
// w's own stream writes it).
func (r *Receiver) WriteTo(w io.Writer) (int64, error) { return r.writeTo(w, -1) }

// WriteToN is [Receiver.WriteTo] for at most n bytes: it returns nil once
// n bytes were written, or [io.EOF] when the stream ended cleanly before
// them, as [io.CopyN] does; bytes past n stay for the next read.
func (r *Receiver) WriteToN(w io.Writer, n int64) (int64, error) {
	if n < 0 {
		n = 0
	}
	return r.writeTo(w, n)
}

// writeTo writes pieces to w up to limit bytes (limit < 0: the whole
// stream).
func (r *Receiver) writeTo(w io.Writer, limit int64) (int64, error) {
	f, _ := w.(Flusher)
	var n int64
	for limit < 0 || n < limit {
		max := 0 // the rest of the current chunk
		if limit >= 0 {
			max = int(min(limit-n, math.MaxInt32))
		}
		p, err := r.take(max)
		if len(p) > 0 {
			k, werr := w.Write(p)
			n += int64(k)
			if werr == nil && k < len(p) {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, werr
			}
			if f != nil && err == nil && !r.pending() {
				if werr := f.Flush(); werr != nil {
					return n, werr
				}
			}
		}
		if err == io.EOF {
			if limit >= 0 {
				return n, io.EOF
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// pending reports whether more data, the stream's end or its error has
// arrived and not been handed out yet.
func (r *Receiver) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur) > 0 || len(r.queue) > 0 || r.eof || r.err != nil || r.closed
}

// take hands out up to limit bytes (limit <= 0: the rest of the current
// chunk) of the data received, waiting for some, and grants the sender
// more credit once half the window was handed out.
func (r *Receiver) take(limit int) ([]byte, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if len(r.cur) == 0 && len(r.queue) > 0 {
			r.cur, r.queue[0] = r.queue[0], nil
			r.queue = r.queue[1:]
		}
		if len(r.cur) > 0 {
			b := r.cur
			if limit > 0 && len(b) > limit {
				b = b[:limit]
			}
			r.cur = r.cur[len(b):]
			if len(r.cur) == 0 {
				r.cur = nil // the chunk is the caller's now
			}
			r.consumed += int64(len(b))
			var grant int64
			if r.granted-r.consumed <= int64(r.opts.Window)/2 {
				r.granted = r.consumed + int64(r.opts.Window)
				grant = r.granted
			}
			ctl := r.ctl
			r.mu.Unlock()
			if grant > 0 {
				r.sendCtl(ctl, hdrCredit, strconv.FormatInt(grant, 10))
			}
			return b, nil
		}
		if r.err != nil {
			err := r.err
			r.mu.Unlock()
			return nil, err
		}
		if r.eof {
			send := !r.doneSent
			r.doneSent = true
			ctl := r.ctl
			r.mu.Unlock()
			if send {
				r.sendCtl(ctl, hdrDone, "1")
			}
			return nil, io.EOF
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-r.ctx.Done():
			r.mu.Lock()
			r.fail(r.ctx.Err())
			r.mu.Unlock()
		}
	}
}

// Trailer returns the trailer the sender closed the stream with
// ([Sender.CloseWithTrailer]), or nil. It is set once Read returned
// io.EOF.
func (r *Receiver) Trailer() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.eof {
		return nil
	}
	return r.trailer
}

// Close stops the stream. If the sender had not finished, it is told to
// stop with [ErrCanceled].
func (r *Receiver) Close() error { return r.CloseWithError("receiver closed") }

// CloseWithError stops the stream, telling an unfinished sender why.
func (r *Receiver) CloseWithError(reason string) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	// Only a reader that read the end confirmed the stream (done). One
	// that stopped short of it, even after the last byte, tells the
	// sender, which would otherwise wait for the confirmation until its
	// peer timeout.
	finished := r.doneSent
	ctl := r.ctl
	hb := r.hbStarted
	r.queue, r.cur = nil, nil
	r.mu.Unlock()
	if !finished {
		r.sendCtl(ctl, hdrCancel, reason)
	}
	if hb {
		close(r.stop)
	}
	return r.sub.Unsubscribe()
}
