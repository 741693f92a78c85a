package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/switchboard/switchboard/internal/natsio"
)

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
}

func newLocalPipe() *localPipe {
	pr, pw := io.Pipe()
	return &localPipe{pr: pr, pw: pw, done: make(chan struct{})}
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
	p   *localPipe
	ctx context.Context // the producer's request
}

// newLocalSink is the producer's end; when the producer's request ends
// early the consumer's read fails.
func newLocalSink(p *localPipe, ctx context.Context) *localSink {
	context.AfterFunc(ctx, func() { p.abort(fmt.Errorf("%w: producer left", ErrPartnerLost)) })
	return &localSink{p: p, ctx: ctx}
}

// newLocalSource is the consumer's end; when the consumer's request ends
// early the producer's write fails.
func newLocalSource(p *localPipe, ctx context.Context) *localSource {
	context.AfterFunc(ctx, func() { p.abort(fmt.Errorf("%w: consumer left", ErrPartnerLost)) })
	return &localSource{p: p}
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
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *localSink) CloseWithError(reason string) error {
	return s.p.pw.CloseWithError(&natsio.RemoteError{Reason: reason})
}

type localSource struct{ p *localPipe }

func (s *localSource) Read(b []byte) (int, error) {
	n, err := s.p.pr.Read(b)
	if errors.Is(err, io.EOF) {
		s.p.finish(nil)
	}
	return n, err
}

func (s *localSource) Close() error { return s.CloseWithError("consumer closed") }

func (s *localSource) CloseWithError(reason string) error {
	err := errors.New(reason)
	s.p.finish(err)
	return s.p.pr.CloseWithError(err)
}
