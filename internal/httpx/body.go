package httpx

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// BodyDeadline gives the client of r at most d to send its request body,
// so a client that trickles a body (one byte a second) cannot hold a
// handler forever. It sets a read deadline d from now on r's connection
// and lifts it once the body was read to its end: net/http watches a
// connection whose body is done with a background read, and a deadline
// firing there would cancel the request's context. A read that hits the
// deadline fails with an error for which [IsTimeout] is true; if the
// handler never reads the body, the deadline also bounds net/http's drain
// of it after the response. Requests without a body, and d <= 0, are left
// alone. Call it before the handler reads r.Body; it replaces r.Body.
func BodyDeadline(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if d <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := readDeadliner(w)
	if rc == nil || rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return // not a net/http connection (a test recorder): nothing to bound
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// readDeadlineSetter is the method net/http's response writer has and
// http.ResponseController calls.
type readDeadlineSetter interface {
	SetReadDeadline(time.Time) error
}

// readDeadliner finds the writer that sets the connection's read deadline
// as http.ResponseController does, looking through wrappers (Unwrap), but
// without allocating a controller per request; nil when there is none.
func readDeadliner(w http.ResponseWriter) readDeadlineSetter {
	for {
		switch t := w.(type) {
		case readDeadlineSetter:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// deadlineBody lifts the connection's read deadline at the body's end.
type deadlineBody struct {
	io.ReadCloser
	rc   readDeadlineSetter
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// IsTimeout reports whether err is a read that ran into a deadline set with
// [BodyDeadline].
func IsTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// EndBody undoes [BodyDeadline] on r once its body was read to the end:
// r.Body is net/http's own body again. net/http then sees, when the
// response head is written, that the body is done (and closed, when the
// handler closed it) instead of trying to drain an unknown reader, which
// costs a read and an allocation per request. A body not read to its
// end, or not wrapped, is left alone.
func EndBody(r *http.Request) {
	if b, ok := r.Body.(*deadlineBody); ok && b.done {
		r.Body = b.ReadCloser
	}
}
