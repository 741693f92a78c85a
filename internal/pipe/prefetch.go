package pipe

import (
	"errors"
	"io"
	"time"
)

// prefetchSize is how much of a waiting producer's body is read ahead;
// see [prefetch].
const prefetchSize = 64 << 10

// prefetch reads the start of a waiting producer's body. net/http only
// notices a client that went away once the handler has read the whole
// body, so a producer whose body fits in the prefetch (the usual case)
// is noticed at once: the read fails, onFail cancels the wait. A larger
// body is noticed at the latest when its transfer starts.
type prefetch struct {
	body io.Reader
	buf  []byte
	n    int
	err  error // io.EOF once the whole body was read
	done chan struct{}
	// small: the body's length is known and fits in buf, so the read-ahead
	// ends with the whole body unless the client stalls or leaves.
	small bool
}

func startPrefetch(body io.Reader, length int64, onFail func(error)) *prefetch {
	size := prefetchSize
	small := length >= 0 && length < prefetchSize
	if small {
		size = int(length) + 1 // room to see EOF
	}
	p := &prefetch{body: body, buf: make([]byte, size), done: make(chan struct{}), small: small}
	go func() {
		defer close(p.done)
		for p.n < len(p.buf) {
			k, err := body.Read(p.buf[p.n:])
			p.n += k
			if err != nil {
				p.err = err
				if !errors.Is(err, io.EOF) {
					onFail(err)
				}
				return
			}
		}
	}()
	return p
}

// reader returns the whole body: what was prefetched, then the rest. It
// waits for the prefetch to finish.
func (p *prefetch) reader() io.Reader {
	<-p.done
	head := &byteReader{b: p.buf[:p.n]}
	switch {
	case p.err == nil:
		return io.MultiReader(head, p.body)
	case errors.Is(p.err, io.EOF):
		return head
	}
	return io.MultiReader(head, errReader{p.err})
}

// whole returns the whole body if the prefetch has already read all of
// it (ok); it does not wait.
func (p *prefetch) whole() (b []byte, ok bool) {
	select {
	case <-p.done:
	default:
		return nil, false
	}
	if !errors.Is(p.err, io.EOF) {
		return nil, false
	}
	return p.buf[:p.n], true
}

// wholeSoon is whole, but for a small body whose read-ahead has not ended
// yet it first waits up to d for it: a producer that arrives to a waiting
// consumer claims it before its read-ahead goroutine ran, although the
// body is usually in the connection's buffer already. Waiting for that
// read (usually one goroutine switch) lets the body go with the pairing
// (one write on the consumer's side, no pipe).
func (p *prefetch) wholeSoon(d time.Duration) (b []byte, ok bool) {
	if p.small {
		select {
		case <-p.done:
		default:
			t := time.NewTimer(d)
			select {
			case <-p.done:
			case <-t.C:
			}
			t.Stop()
		}
	}
	return p.whole()
}

// stop ends a prefetch still blocked in a read (the producer is leaving
// without the body) with interrupt, and waits for it.
func (p *prefetch) stop(interrupt func()) {
	select {
	case <-p.done:
		return
	default:
	}
	interrupt()
	<-p.done
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
