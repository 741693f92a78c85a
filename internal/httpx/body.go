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
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return // not a net/http connection (a test recorder): nothing to bound
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the connection's read deadline at the body's end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
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
