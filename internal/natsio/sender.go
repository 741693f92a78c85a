package natsio

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Sender is the writing end of a stream. It implements io.WriteCloser and
// io.ReaderFrom.
type Sender struct {
	nc     *nats.Conn
	ctx    context.Context
	opts   Options
	subj   string
	ctl    string
	ctlSub *nats.Subscription
	notify chan struct{}
	stop   chan struct{}

	mu        sync.Mutex
	credit    int64
	sent      int64
	seq       uint64
	lastHeard time.Time
	lastSent  time.Time
	done      bool
	err       error
	closed    bool
}

var (
	_ io.WriteCloser = (*Sender)(nil)
	_ io.ReaderFrom  = (*Sender)(nil)
)

// NewSender opens a stream to a receiver's subject. It fails fast with
// [ErrNoReceiver] when nobody listens there. Once ctx ends, writes fail and
// the receiver is told.
func NewSender(ctx context.Context, nc *nats.Conn, subject string, opts Options) (*Sender, error) {
	if err := opts.checkPeer(subject); err != nil {
		return nil, err
	}
	s := &Sender{
		nc:     nc,
		ctx:    ctx,
		opts:   opts.withDefaults(nc.MaxPayload()),
		subj:   subject,
		ctl:    opts.inbox(nc),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	sub, err := nc.Subscribe(s.ctl, s.handle)
	if err != nil {
		return nil, err
	}
	s.ctlSub = sub
	hello := nats.NewMsg(subject)
	hello.Header.Set(hdrHello, "1")
	hello.Header.Set(hdrCtl, s.ctl)
	resp, err := s.hello(ctx, hello)
	if err != nil {
		_ = sub.Unsubscribe()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return nil, ErrNoReceiver
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			return nil, ErrPeerLost
		}
		return nil, err
	}
	credit, _ := strconv.ParseInt(resp.Header.Get(hdrCredit), 10, 64)
	s.mu.Lock()
	s.credit = max(s.credit, credit)
	s.lastHeard, s.lastSent = time.Now(), time.Now()
	s.mu.Unlock()
	go s.heartbeat()
	return s, nil
}

// noReceiverGrace bounds how long a hello is retried on "no responders":
// in a cluster the receiver's interest reaches other servers shortly after
// its own server confirmed it.
const noReceiverGrace = 500 * time.Millisecond

func (s *Sender) hello(ctx context.Context, hello *nats.Msg) (*nats.Msg, error) {
	deadline := time.Now().Add(noReceiverGrace)
	wait := 10 * time.Millisecond
	for {
		hctx, cancel := context.WithTimeout(ctx, s.opts.PeerTimeout)
		resp, err := s.nc.RequestMsgWithContext(hctx, hello)
		cancel()
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (s *Sender) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Sender) handle(m *nats.Msg) {
	h := m.Header
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastHeard = time.Now()
	if c := h.Get(hdrCredit); c != "" {
		if n, err := strconv.ParseInt(c, 10, 64); err == nil && n > s.credit {
			s.credit = n
		}
	}
	if h.Get(hdrDone) != "" {
		s.done = true
	}
	if reason := h.Get(hdrCancel); reason != "" && !s.done && s.err == nil {
		s.err = ErrCanceled
	}
	s.signal()
}

func (s *Sender) heartbeat() {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.err == nil && time.Since(s.lastHeard) > s.opts.PeerTimeout {
			s.err = ErrPeerLost
			s.signal()
		}
		idle := time.Since(s.lastSent) >= s.opts.Heartbeat
		s.mu.Unlock()
		if idle {
			m := nats.NewMsg(s.subj)
			m.Header.Set(hdrHB, "1")
			_ = s.nc.PublishMsg(m)
		}
	}
}

// wait blocks until cond holds (checked under s.mu) or the stream fails.
func (s *Sender) wait(cond func() bool) error {
	for {
		s.mu.Lock()
		ok, err := cond(), s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-s.notify:
		case <-s.ctx.Done():
			s.mu.Lock()
			if s.err == nil {
				s.err = s.ctx.Err()
			}
			s.mu.Unlock()
		}
	}
}

// Write sends p, blocking while the receiver has granted no credit.
func (s *Sender) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := s.wait(func() bool { return s.closed || s.credit > s.sent }); err != nil {
			return written, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return written, ErrClosed
		}
		n := min(len(p), s.opts.ChunkSize, int(s.credit-s.sent))
		seq := s.seq
		s.seq++
		s.sent += int64(n)
		s.lastSent = time.Now()
		s.mu.Unlock()
		if err := s.publish(seq, p[:n], nil); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// ReadFrom copies r to the stream in chunks of ChunkSize.
func (s *Sender) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, s.opts.ChunkSize)
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			w, err := s.Write(buf[:n])
			total += int64(w)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

func (s *Sender) publish(seq uint64, data []byte, extra map[string]string) error {
	m := nats.NewMsg(s.subj)
	m.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
	for k, v := range extra {
		m.Header.Set(k, v)
	}
	m.Data = data
	return s.nc.PublishMsg(m)
}

// Close ends the stream cleanly and waits until the receiver has read
// everything (or the stream failed).
func (s *Sender) Close() error { return s.CloseWithTrailer(nil) }

// WriteAndClose writes p and ends the stream cleanly with p's last chunk,
// one message fewer than Write and Close, so that the receiver knows the
// last piece for the last as it arrives; then it waits as Close does. An
// empty p is Close. If it fails before the end is sent, the stream is
// ended with an error (as after CloseWithError), so nothing is left
// running.
func (s *Sender) WriteAndClose(p []byte) error {
	// All but the last chunk as Write sends them.
	if head := len(p) - s.opts.ChunkSize; head > 0 {
		if _, err := s.Write(p[:head]); err != nil {
			_ = s.CloseWithError(err.Error())
			return err
		}
		p = p[head:]
	}
	// The last chunk goes whole, with the end, once the receiver's credit
	// covers it. It always comes: the window is at least two chunks and
	// the receiver tops its credit up to a window past what it read.
	if len(p) > 0 {
		if err := s.wait(func() bool { return s.closed || s.credit >= s.sent+int64(len(p)) }); err != nil {
			_ = s.CloseWithError(err.Error())
			return err
		}
	}
	return s.end(p, int64(len(p)), map[string]string{hdrEOF: "1"})
}

// end sends the stream's last message, data (n bytes of it stream data)
// with the end headers eof, and waits until the receiver has read
// everything (or the stream failed).
func (s *Sender) end(data []byte, n int64, eof map[string]string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	seq := s.seq
	s.seq++
	s.sent += n
	s.lastSent = time.Now()
	err := s.err
	s.mu.Unlock()
	defer s.release()
	if err != nil {
		return err
	}
	if err := s.publish(seq, data, eof); err != nil {
		return err
	}
	return s.wait(func() bool { return s.done })
}

// ErrTrailerTooLarge means a trailer does not fit in one chunk.
var ErrTrailerTooLarge = errors.New("natsio: trailer larger than a chunk")

// CloseWithTrailer ends the stream cleanly, as Close, handing the
// receiver trailer (opaque bytes, at most one chunk; nil for none), which
// [Receiver.Trailer] returns once Read returned io.EOF.
func (s *Sender) CloseWithTrailer(trailer []byte) error {
	if len(trailer) > s.opts.ChunkSize {
		_ = s.CloseWithError("trailer too large")
		return ErrTrailerTooLarge
	}
	eof := map[string]string{hdrEOF: "1"}
	if trailer != nil {
		eof[hdrTrail] = "1"
	}
	return s.end(trailer, 0, eof)
}

// CloseWithError ends the stream; the receiver's Read returns a
// [RemoteError] with reason.
func (s *Sender) CloseWithError(reason string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	seq := s.seq
	s.seq++
	s.mu.Unlock()
	defer s.release()
	if reason == "" {
		reason = "sender failed"
	}
	return s.publish(seq, nil, map[string]string{hdrErr: reason})
}

func (s *Sender) release() {
	close(s.stop)
	_ = s.ctlSub.Unsubscribe()
}
