package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/subjects"
)

// maxNameLen caps a namespace or channel name (bytes, decoded).
const maxNameLen = subjects.MaxNameLen

// prefetchSize is how much of a waiting producer's body is read ahead;
// see [prefetch].
const prefetchSize = 64 << 10

// copyBufSize is the buffer of a transfer's copy loop.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Mount registers the pipe routes. The literal /channels/namespaces wins
// over a namespace called "namespaces" (echo prefers static segments).
func (s *Service) Mount(e *echo.Echo) {
	// The listings and DELETEs read no body: a client may not hold them
	// open by trickling one (http.body_timeout). Transfers stream.
	e.GET("/channels/namespaces", s.namespaces, s.bodyDeadline)
	e.GET("/channels/:ns", s.channels, s.bodyDeadline)
	e.DELETE("/channels/:ns", s.deleteNamespace, s.bodyDeadline)
	e.GET("/channels/:ns/:name", s.consume)
	e.POST("/channels/:ns/:name", s.produce)
	e.PUT("/channels/:ns/:name", s.produce)
	e.DELETE("/channels/:ns/:name", s.deleteChannel, s.bodyDeadline)
	e.GET("/state", s.state, s.bodyDeadline)
}

// bodyDeadline bounds the time to send a request body (see
// [httpx.BodyDeadline]).
func (s *Service) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.deps.Config != nil {
			httpx.BodyDeadline(c.Response(), c.Request(), s.deps.Config.HTTP.BodyTimeout)
		}
		return next(c)
	}
}

// fail writes err's envelope.
func fail(c echo.Context, err error) error {
	he := httpError(err)
	httpx.WriteError(c.Response(), he.Status, he.Code, he.Message)
	return nil
}

// param returns path parameter name, percent-decoded exactly once (see
// [httpx.PathParam]), non-empty and at most maxNameLen bytes.
func param(c echo.Context, name string) (string, error) {
	v, err := httpx.PathParam(c.Request(), c.Param(name))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBadName, name, err)
	}
	switch {
	case v == "":
		return "", fmt.Errorf("%w: empty %s", ErrBadName, name)
	case len(v) > maxNameLen:
		return "", fmt.Errorf("%w: %s of %d bytes is longer than %d", ErrBadName, name, len(v), maxNameLen)
	}
	return v, nil
}

func channelParams(c echo.Context) (Channel, error) {
	ns, err := param(c, "ns")
	if err != nil {
		return Channel{}, err
	}
	name, err := param(c, "name")
	if err != nil {
		return Channel{}, err
	}
	return Channel{Namespace: ns, Name: name}, nil
}

// normalizeContentType returns what the consumer is told: the producer's
// type, or application/octet-stream when it sent none or the form type
// curl adds by default.
func normalizeContentType(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/x-www-form-urlencoded" {
		return "application/octet-stream"
	}
	return ct
}

func (s *Service) namespaces(c echo.Context) error {
	list, err := s.hub.Namespaces(c.Request().Context())
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, list)
}

func (s *Service) channels(c echo.Context) error {
	ns, err := param(c, "ns")
	if err != nil {
		return fail(c, err)
	}
	list, err := s.hub.Channels(c.Request().Context(), ns)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, list)
}

func (s *Service) state(c echo.Context) error {
	st, err := s.hub.State(c.Request().Context())
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Service) deleteNamespace(c echo.Context) error {
	ns, err := param(c, "ns")
	if err != nil {
		return fail(c, err)
	}
	if err := s.hub.Delete(c.Request().Context(), ns, ""); err != nil {
		return fail(c, err)
	}
	return c.NoContent(http.StatusOK)
}

func (s *Service) deleteChannel(c echo.Context) error {
	ch, err := channelParams(c)
	if err != nil {
		return fail(c, err)
	}
	if err := s.hub.Delete(c.Request().Context(), ch.Namespace, ch.Name); err != nil {
		return fail(c, err)
	}
	return c.NoContent(http.StatusOK)
}

// consume serves a consumer: wait for a producer, then stream its body
// with chunked encoding. If the producer's side fails mid-body the
// response is cut (the handler aborts, no terminating chunk), so the
// client sees an error instead of a short body that looks complete.
func (s *Service) consume(c echo.Context) error {
	ch, err := channelParams(c)
	if err != nil {
		return fail(c, err)
	}
	ctx, done, err := s.deps.Streams.Begin(c.Request().Context(), "pipe")
	if err != nil {
		return fail(c, ErrShuttingDown)
	}
	defer done()
	d, err := s.hub.Consume(ctx, ch)
	if err != nil {
		return fail(c, err)
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, d.ContentType)
	w.Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A write blocked on a client that stopped reading must end when the
	// request does (gateway shutdown).
	defer whileHandling(ctx, func() { _ = rc.SetWriteDeadline(time.Now()) })()
	_ = rc.Flush()
	n, readErr, writeErr := copyFlush(w, rc, d.Body)
	s.hub.m.bytes.Add(float64(n))
	switch {
	case writeErr != nil:
		_ = d.Body.CloseWithError("consumer went away")
		return nil
	case readErr != nil:
		_ = d.Body.CloseWithError("consumer failed")
		s.log.Debug("pipe transfer cut", "bytes", n, "err", readErr)
		panic(http.ErrAbortHandler)
	}
	_ = d.Body.Close()
	return nil
}

// whileHandling runs f if ctx ends before the returned stop is called;
// stop waits for a running f, so f never touches the response after the
// handler returned (echo reuses it).
func whileHandling(ctx context.Context, f func()) (stop func()) {
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

// copyFlush copies src to w, flushing after every write so a slow stream
// reaches the client as it is produced.
func copyFlush(w io.Writer, rc *http.ResponseController, src io.Reader) (n int64, readErr, writeErr error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, nil, werr
			}
			n += int64(k)
			if werr := rc.Flush(); werr != nil {
				return n, nil, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// produce serves a producer: wait for a consumer, stream the body to it,
// answer 200 once the consumer got all of it (502 if it went away).
func (s *Service) produce(c echo.Context) error {
	ch, err := channelParams(c)
	if err != nil {
		return fail(c, err)
	}
	req := c.Request()
	ctx, done, err := s.deps.Streams.Begin(req.Context(), "pipe")
	if err != nil {
		return fail(c, ErrShuttingDown)
	}
	defer done()
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc := http.NewResponseController(c.Response())
	body := startPrefetch(req.Body, req.ContentLength, func(err error) {
		cancel(fmt.Errorf("%w: %v", ErrClientGone, err))
	})
	defer body.stop(rc)
	// A read blocked on a client that sends nothing must end when the
	// request does (gateway shutdown).
	defer whileHandling(ctx, func() { _ = rc.SetReadDeadline(time.Now()) })()
	sink, err := s.hub.Produce(wctx, ch, normalizeContentType(req.Header.Get(echo.HeaderContentType)))
	if err != nil {
		return fail(c, err)
	}
	if err := s.send(sink, body); err != nil {
		return fail(c, err)
	}
	s.hub.m.transfers.WithLabelValues("ok").Inc()
	return c.NoContent(http.StatusOK)
}

// send streams the producer's body into sink and waits for the consumer.
func (s *Service) send(sink Sink, body *prefetch) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	src := body.reader()
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := sink.Write(buf[:k]); err != nil {
				_ = sink.CloseWithError("producer side failed")
				s.hub.m.transfers.WithLabelValues("consumer_lost").Inc()
				return s.transferError(err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			if s.hub.stopping() {
				// The read was unblocked by the gateway's own shutdown,
				// not by the producer leaving.
				_ = sink.CloseWithError("gateway shutting down")
				s.hub.m.transfers.WithLabelValues("shutdown").Inc()
				return fmt.Errorf("%w: %v", ErrShuttingDown, rerr)
			}
			_ = sink.CloseWithError("producer went away")
			s.hub.m.transfers.WithLabelValues("producer_lost").Inc()
			return fmt.Errorf("%w: %v", ErrClientGone, rerr)
		}
	}
	if err := sink.Close(); err != nil {
		s.hub.m.transfers.WithLabelValues("consumer_lost").Inc()
		return s.transferError(err)
	}
	return nil
}

// transferError classifies a failed write to the consumer's side.
func (s *Service) transferError(err error) error {
	if s.hub.stopping() {
		return fmt.Errorf("%w: %v", ErrShuttingDown, err)
	}
	if errors.Is(err, ErrPartnerLost) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrPartnerLost, err)
}

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
}

func startPrefetch(body io.Reader, length int64, onFail func(error)) *prefetch {
	size := prefetchSize
	if length >= 0 && length < prefetchSize {
		size = int(length) + 1 // room to see EOF
	}
	p := &prefetch{body: body, buf: make([]byte, size), done: make(chan struct{})}
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

// stop ends a prefetch still blocked in a read (the handler is leaving
// without the body) and waits for it.
func (p *prefetch) stop(rc *http.ResponseController) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = rc.SetReadDeadline(time.Now())
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

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
