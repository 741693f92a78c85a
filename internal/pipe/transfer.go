package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// copyBufSize is the buffer of a transfer's copy loop.
const copyBufSize = 256 << 10

var copyBufs = httpx.NewBuffers(copyBufSize)

// Input is a producer's body as its transport hands it over.
type Input struct {
	// Body is the producer's body.
	Body io.Reader
	// Meta is what the consumer is told: the content type, already
	// normalised, Body's length (-1 = unknown) and the other headers that
	// pass. Send refuses values beyond the bounds with [ErrBadHeader], and
	// a Body that does not match the length with [ErrLength].
	Meta Meta
	// Interrupt makes a Body.Read in progress, and every later one, fail
	// at once (HTTP: a read deadline of now). Send calls it when ctx ends
	// and when it returns without having read the body to its end.
	// Required.
	Interrupt func()
	// Progress, if set, is given the sender's feedback as text lines
	// ending in a newline, as piping-server writes them (see
	// progress.go); Send calls it from its own goroutine.
	Progress func(line string)
}

// Output is a consumer's response as its transport offers it.
type Output interface {
	// Start sends the response head with the producer's headers; a
	// known length is announced (Receive then writes exactly that many
	// bytes or fails). Receive calls it once, when paired, before
	// anything else.
	Start(m Meta)
	// Write passes body bytes on; Flush sends them to the client now.
	io.Writer
	Flush() error
	// Interrupt makes a Write in progress, and every later one, fail at
	// once (HTTP: a write deadline of now). Receive calls it when ctx
	// ends during the transfer.
	Interrupt()
	// Resume lifts an Interrupt that came after the whole body was
	// written and its end confirmed to the producer (which then has its
	// 200): what is still buffered and the response's end may go out,
	// within a bound (HTTP: a write deadline of resumeWait from now).
	Resume()
}

// Send runs a producer on ch: it waits for a consumer, streams in.Body
// to it and returns nil once the consumer got all of it. A producer whose
// client goes away while waiting is noticed at once (see [prefetch]).
// ctx is the producer's request; it ends at gateway shutdown too.
func (h *Hub) Send(ctx context.Context, ch Channel, in Input) error {
	if err := in.Meta.validate(); err != nil {
		return err
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	src := newExactBody(in.Body, in.Meta.Length)
	body := startPrefetch(src, in.Meta.Length, func(err error) {
		if errors.Is(err, ErrLength) {
			cancel(err)
			return
		}
		cancel(fmt.Errorf("%w: %v", ErrClientGone, err))
	})
	defer body.stop(in.Interrupt)
	// A read blocked on a client that sends nothing must end when the
	// request does (gateway shutdown).
	defer whileRunning(ctx, in.Interrupt)()
	if in.Meta.N > 1 || in.Meta.Pub || in.Progress != nil {
		return h.sendGroup(wctx, ch, in, body)
	}
	p, err := h.rendezvous(wctx, ch, subjects.PipeProducer, in.Meta, body)
	if err != nil {
		return err
	}
	var rest io.Reader = eofReader{} // the consumer took the body with the pairing
	if !p.handed {
		rest = body.reader()
	}
	if err := h.send(p.sink, rest); err != nil {
		return err
	}
	h.m.transfers.WithLabelValues("ok").Inc()
	return nil
}

// send streams the producer's body into sink and waits for the consumer.
func (h *Hub) send(sink Sink, src io.Reader) error {
	_, readErr, writeErr := copyFlush(sink, nil, src)
	switch {
	case writeErr != nil:
		_ = sink.CloseWithError("producer side failed")
		h.m.transfers.WithLabelValues("consumer_lost").Inc()
		return h.transferError(writeErr)
	case errors.Is(readErr, ErrLength):
		_ = sink.CloseWithError("producer's body does not match its Content-Length")
		h.m.transfers.WithLabelValues("bad_length").Inc()
		return readErr
	case readErr != nil && h.stopping():
		// The read was unblocked by the gateway's own shutdown, not by
		// the producer leaving.
		_ = sink.CloseWithError("gateway shutting down")
		h.m.transfers.WithLabelValues("shutdown").Inc()
		return fmt.Errorf("%w: %v", protocol.ErrShuttingDown, readErr)
	case readErr != nil:
		_ = sink.CloseWithError("producer went away")
		h.m.transfers.WithLabelValues("producer_lost").Inc()
		return fmt.Errorf("%w: %v", ErrClientGone, readErr)
	}
	if err := sink.Close(); err != nil {
		h.m.transfers.WithLabelValues("consumer_lost").Inc()
		return h.transferError(err)
	}
	return nil
}

// transferError classifies a failed write to the consumer's side.
func (h *Hub) transferError(err error) error {
	if h.stopping() {
		return fmt.Errorf("%w: %v", protocol.ErrShuttingDown, err)
	}
	if errors.Is(err, ErrPartnerLost) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrPartnerLost, err)
}

// Receive runs a consumer on ch: it waits for a producer, then streams
// its body into out, flushing every write. An error before out.Start is
// the reason no producer came. After it, an error wrapping
// [ErrClientGone] means the consumer's client went away; any other means
// the producer's side failed mid-body, and the transport must cut the
// response (no clean end), so the client sees an error instead of a
// short body that looks complete. ctx is the consumer's request; it ends
// at gateway shutdown too.
func (h *Hub) Receive(ctx context.Context, ch Channel, out Output) error {
	return h.ReceiveWith(ctx, ch, ReceiveOptions{}, out)
}

// ReceiveWith is [Hub.Receive] with the consumer's options (?n=N,
// ?pubsub=true).
func (h *Hub) ReceiveWith(ctx context.Context, ch Channel, o ReceiveOptions, out Output) error {
	d, err := h.consumeWith(ctx, ch, o)
	if err != nil {
		return err
	}
	out.Start(d.Meta)
	// A write blocked on a client that stopped reading must end when the
	// request does (gateway shutdown).
	stopInterrupt := whileRunning(ctx, out.Interrupt)
	defer stopInterrupt()
	flush := out.Flush
	if d.whole {
		// The whole body is here already: the head goes out with it, in
		// one write when the response ends.
		flush = nil
	} else {
		_ = out.Flush()
	}
	// The producer's side checks the length too; checking here as well
	// keeps the announced length true whatever the source.
	var n int64
	var readErr, writeErr error
	if src, ok := piecesOf(d.Body); ok {
		n, readErr, writeErr = writePieces(out, src, d.Meta.Length)
	} else {
		n, readErr, writeErr = copyFlush(out, flush, newExactBody(d.Body, d.Meta.Length))
	}
	h.m.bytes.Add(float64(n))
	switch {
	case writeErr != nil:
		_ = d.Body.CloseWithError("consumer went away")
		return fmt.Errorf("%w: %v", ErrClientGone, writeErr)
	case readErr != nil:
		_ = d.Body.CloseWithError("consumer failed")
		h.log.Debug("pipe transfer cut", "bytes", n, "err", readErr)
		return fmt.Errorf("%w: %v", ErrPartnerLost, readErr)
	}
	// Every byte was written and the end read, which told the producer's
	// side it arrived: its client has (or gets) its 200. A shutdown that
	// interrupted the response after that must not cut what is still
	// buffered, or its end, from the consumer.
	stopInterrupt()
	if ctx.Err() != nil {
		out.Resume()
	}
	_ = d.Body.Close()
	return nil
}

func copyFlush(w io.Writer, flush func() error, src io.Reader) (n int64, readErr, writeErr error) {
	bp := copyBufs.Get()
	defer copyBufs.Put(bp)
	return httpx.CopyFlush(w, flush, src, *bp)
}

// whileRunning runs f if ctx ends before the returned stop is called;
// stop waits for a running f, so f never touches the transport after the
// transfer returned (the request is over then).
func whileRunning(ctx context.Context, f func()) (stop func()) {
	var mu sync.Mutex
	returned := false
	cancel := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !returned {
			f()
		}
	})
	return func() {
		cancel()
		mu.Lock()
		returned = true
		mu.Unlock()
	}
}

// Sink is the producer's end of a transfer: the body is written to it,
// then Close waits until the consumer has read all of it.
type Sink interface {
	io.Writer
	// Close ends the body and returns once the consumer read everything,
	// or the error that ended the transfer.
	Close() error
	// CloseWithError aborts the body; the consumer's read fails.
	CloseWithError(reason string) error
}

// Source is the consumer's end of a transfer.
type Source interface {
	io.Reader
	// Close ends the transfer; an unfinished producer is told to stop.
	Close() error
	// CloseWithError ends the transfer, telling an unfinished producer why.
	CloseWithError(reason string) error
}

var (
	_ Sink   = (*natsio.Sender)(nil)
	_ Source = (*natsio.Receiver)(nil)
	_ pieces = (*natsio.Receiver)(nil)
	_ Sink   = (*localSink)(nil)
	_ Source = (*localSource)(nil)
)

// localPipe hands a body over in-process when the producer and the
// consumer are held by the same gateway. Writes block until the reader
// took the bytes (io.Pipe), so memory stays constant.
type localPipe struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	once sync.Once
	done chan struct{}
	err  error // nil: the consumer read to EOF

	// handed: the producer's whole body, read ahead before the pairing
	// (see [prefetch]), is whole; the consumer reads it from there and
	// the pipe carries nothing. Set by the producer's side before the
	// claim or its answer is sent, read by the consumer's after.
	handed bool
	whole  []byte
}

func newLocalPipe() *localPipe {
	pr, pw := io.Pipe()
	return &localPipe{pr: pr, pw: pw, done: make(chan struct{})}
}

// hand records the producer's whole body, if its read-ahead has it all
// (ok), so the consumer takes it without the pipe.
func (p *localPipe) hand(whole []byte, ok bool) {
	p.handed, p.whole = ok, whole
}

// abort fails both ends (the pairing fell through).
func (p *localPipe) abort(err error) {
	p.finish(err)
	_ = p.pw.CloseWithError(err)
	_ = p.pr.CloseWithError(err)
}

// finish records how the consumer's side ended (nil = read to EOF).
func (p *localPipe) finish(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

type localSink struct {
	p    *localPipe
	ctx  context.Context // the producer's request
	stop func() bool     // of the abort when ctx ends
}

// newLocalSink is the producer's end; when the producer's request ends
// before the consumer read everything, the consumer's read fails.
func newLocalSink(p *localPipe, ctx context.Context) *localSink {
	stop := context.AfterFunc(ctx, func() { p.abort(fmt.Errorf("%w: producer left", ErrPartnerLost)) })
	return &localSink{p: p, ctx: ctx, stop: stop}
}

// newLocalSource is the consumer's end; when the consumer's request ends
// before it read everything, the producer's write fails.
func newLocalSource(p *localPipe, ctx context.Context) *localSource {
	stop := context.AfterFunc(ctx, func() { p.abort(fmt.Errorf("%w: consumer left", ErrPartnerLost)) })
	return &localSource{p: p, stop: stop}
}

func (s *localSink) Write(b []byte) (int, error) {
	n, err := s.p.pw.Write(b)
	if err != nil {
		return n, fmt.Errorf("%w: %v", ErrPartnerLost, err)
	}
	return n, nil
}

func (s *localSink) Close() error {
	_ = s.p.pw.Close()
	select {
	case <-s.p.done:
		if s.p.err != nil {
			return fmt.Errorf("%w: %v", ErrPartnerLost, s.p.err)
		}
		// The consumer read everything: nothing is left to abort when the
		// request ends (no goroutine for it then).
		s.stop()
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *localSink) CloseWithError(reason string) error {
	return s.p.pw.CloseWithError(&natsio.RemoteError{Reason: reason})
}

type localSource struct {
	p    *localPipe
	off  int         // of p.whole, when handed
	stop func() bool // of the abort when the consumer's request ends
}

func (s *localSource) Read(b []byte) (int, error) {
	if s.p.handed {
		return s.readWhole(b)
	}
	n, err := s.p.pr.Read(b)
	if errors.Is(err, io.EOF) {
		s.p.finish(nil)
	}
	return n, err
}

// readWhole reads the body handed over with the pairing; the end of it
// is the end of the transfer, as the pipe's EOF is. A producer that left
// before fails the read, as it fails the pipe's.
func (s *localSource) readWhole(b []byte) (int, error) {
	select {
	case <-s.p.done:
		if s.p.err != nil {
			return 0, s.p.err
		}
		return 0, io.EOF
	default:
	}
	n := copy(b, s.p.whole[s.off:])
	s.off += n
	if s.off < len(s.p.whole) {
		return n, nil
	}
	s.p.finish(nil)
	return n, io.EOF
}

// Close ends the consumer's side. After a read to the end, nothing is
// left to abort when the request ends.
func (s *localSource) Close() error {
	if s.finished() {
		s.stop()
	}
	return s.CloseWithError("consumer closed")
}

// finished reports whether the consumer read the body to its end.
func (s *localSource) finished() bool {
	select {
	case <-s.p.done:
		return s.p.err == nil
	default:
		return false
	}
}

func (s *localSource) CloseWithError(reason string) error {
	err := errors.New(reason)
	s.p.finish(err)
	return s.p.pr.CloseWithError(err)
}
