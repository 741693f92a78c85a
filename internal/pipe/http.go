package pipe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// maxNameLen caps a namespace or channel name (bytes, decoded).
const maxNameLen = subjects.MaxNameLen

// Routes are the pipe routes. The literal /channels/namespaces wins over
// a namespace called "namespaces" (the router prefers static segments).
// A trailing slash is ignored, as httpipe does: every route is also
// declared with one (/channels/v1/x/ is channel x, /channels/v1/ the
// listing of namespace v1). The listings and DELETEs read no body: a
// client may not hold them open by trickling one (http.body_timeout).
// Transfers stream.
func (s *Service) Routes() []protocol.Route {
	var routes []protocol.Route
	route := func(method, path string, h http.HandlerFunc) {
		routes = append(routes,
			protocol.Route{Method: method, Path: path, Handler: h},
			protocol.Route{Method: method, Path: path + "/", Handler: h})
	}
	route(http.MethodGet, "/channels/namespaces", s.bodyDeadline(s.namespaces))
	route(http.MethodGet, "/channels/:ns", s.bodyDeadline(s.channels))
	route(http.MethodDelete, "/channels/:ns", s.bodyDeadline(s.deleteNamespace))
	route(http.MethodGet, "/channels/:ns/:name", s.consume)
	route(http.MethodPost, "/channels/:ns/:name", s.produce)
	route(http.MethodPut, "/channels/:ns/:name", s.produce)
	route(http.MethodDelete, "/channels/:ns/:name", s.bodyDeadline(s.deleteChannel))
	route(http.MethodGet, "/state", s.bodyDeadline(s.state))
	return routes
}

// bodyDeadline bounds the time to send a request body (see
// [httpx.BodyDeadline]).
func (s *Service) bodyDeadline(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		httpx.BodyDeadline(w, r, s.bodyTimeout)
		next(w, r)
	}
}

// fail writes err's envelope.
func fail(w http.ResponseWriter, err error) {
	he := httpError(err)
	httpx.WriteError(w, he.Status, he.Code, he.Message)
}

// writeJSON answers 200 with v as JSON, indented when the query has
// "pretty" (as the gateway's router always did).
func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	if _, pretty := r.URL.Query()["pretty"]; pretty {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v)
}

// param returns path parameter name, percent-decoded exactly once (see
// [httpx.PathParam]), non-empty and at most maxNameLen bytes.
func param(r *http.Request, name string) (string, error) {
	v, err := httpx.PathParam(r, r.PathValue(name))
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

func channelParams(r *http.Request) (Channel, error) {
	ns, err := param(r, "ns")
	if err != nil {
		return Channel{}, err
	}
	name, err := param(r, "name")
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

// requestMeta is what a producer's request tells its consumer: the
// normalised Content-Type, the Content-Length (-1 when the body is
// chunked), the first Content-Disposition and every X-Piping value.
// Other headers stay here. [Hub.Send] checks the bounds.
func requestMeta(r *http.Request) Meta {
	return Meta{
		ContentType: normalizeContentType(r.Header.Get("Content-Type")),
		Length:      r.ContentLength,
		Disposition: r.Header.Get("Content-Disposition"),
		Piping:      r.Header.Values("X-Piping"),
	}
}

func (s *Service) namespaces(w http.ResponseWriter, r *http.Request) {
	list, err := s.hub.Namespaces(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, r, list)
}

func (s *Service) channels(w http.ResponseWriter, r *http.Request) {
	ns, err := param(r, "ns")
	if err != nil {
		fail(w, err)
		return
	}
	list, err := s.hub.Channels(r.Context(), ns)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, r, list)
}

func (s *Service) state(w http.ResponseWriter, r *http.Request) {
	st, err := s.hub.State(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, r, st)
}

func (s *Service) deleteNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := param(r, "ns")
	if err != nil {
		fail(w, err)
		return
	}
	if err := s.hub.Delete(r.Context(), ns, ""); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Service) deleteChannel(w http.ResponseWriter, r *http.Request) {
	ch, err := channelParams(r)
	if err != nil {
		fail(w, err)
		return
	}
	if err := s.hub.Delete(r.Context(), ch.Namespace, ch.Name); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// begin checks what a consumer and a producer request both carry (the
// channel, the query modes) and registers the request as a long-lived
// stream; on a refusal it has answered with the error envelope and ok is
// false. done ends the stream's registration.
func (s *Service) begin(w http.ResponseWriter, r *http.Request) (ctx context.Context, ch Channel, md modes, done func(), ok bool) {
	ch, err := channelParams(r)
	if err != nil {
		fail(w, err)
		return nil, ch, md, nil, false
	}
	if md, err = queryModes(r, s.hub.cfg.MaxReceivers); err != nil {
		fail(w, err)
		return nil, ch, md, nil, false
	}
	if ctx, done, err = s.streams.Begin(r.Context(), "pipe"); err != nil {
		fail(w, protocol.ErrShuttingDown)
		return nil, ch, md, nil, false
	}
	return ctx, ch, md, done, true
}

// consume serves a consumer (see [Hub.Receive]): 200 and the producer's
// body with chunked encoding, or the error envelope if no producer came.
// If the producer's side fails mid-body the response is cut (the handler
// aborts, no terminating chunk).
func (s *Service) consume(w http.ResponseWriter, r *http.Request) {
	ctx, ch, md, done, ok := s.begin(w, r)
	if !ok {
		return
	}
	defer done()
	out := &response{w: w, rc: http.NewResponseController(w)}
	err := s.hub.ReceiveWith(ctx, ch, ReceiveOptions{N: md.n, PubSub: md.pubsub}, out)
	switch {
	case err == nil:
	case !out.started:
		fail(w, err)
	case !errors.Is(err, ErrClientGone):
		panic(http.ErrAbortHandler)
	}
}

// produce serves a producer (see [Hub.Send]): 200 once the consumer got
// the whole body, else the error envelope (502 if it went away). With
// ?progress=1 the 200 comes with the first feedback line and a later
// failure is the last line of a cut response (see progress.go).
func (s *Service) produce(w http.ResponseWriter, r *http.Request) {
	ctx, ch, md, done, ok := s.begin(w, r)
	if !ok {
		return
	}
	defer done()
	rc := http.NewResponseController(w)
	meta := requestMeta(r)
	meta.N, meta.Pub = md.n, md.pubsub
	in := Input{
		Body:      r.Body,
		Meta:      meta,
		Interrupt: func() { _ = rc.SetReadDeadline(time.Now()) },
	}
	var fb *feedback
	if md.progress {
		fb = &feedback{w: w, rc: rc}
		in.Progress = fb.line
	}
	err := s.hub.Send(ctx, ch, in)
	switch {
	case fb != nil && fb.started:
		fb.end(err)
	case err != nil:
		fail(w, err)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// response is a consumer's HTTP response as a transfer's [Output].
type response struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (o *response) Start(m Meta) {
	o.started = true
	h := o.w.Header()
	h.Set("Content-Type", m.ContentType)
	if m.Length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(m.Length, 10))
	}
	if m.Disposition != "" {
		h.Set("Content-Disposition", m.Disposition)
	}
	for _, v := range m.Piping {
		h.Add("X-Piping", v)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	o.w.WriteHeader(http.StatusOK)
}

func (o *response) Write(p []byte) (int, error) { return o.w.Write(p) }

func (o *response) Flush() error { return o.rc.Flush() }

func (o *response) Interrupt() { _ = o.rc.SetWriteDeadline(time.Now()) }

// resumeWait bounds the end of a consumer's response that a shutdown
// interrupted after its whole body was written (see [Output.Resume]).
const resumeWait = 5 * time.Second

func (o *response) Resume() { _ = o.rc.SetWriteDeadline(time.Now().Add(resumeWait)) }

// feedback is a producer's response under ?progress=1.
type feedback struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	broken  bool // a write failed: the client is gone
}

// line sends one feedback line, starting the 200 response at the first.
// The body is still being read, so the response runs full duplex.
func (f *feedback) line(s string) {
	if f.broken {
		return
	}
	if !f.started {
		f.started = true
		_ = f.rc.EnableFullDuplex()
		h := f.w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		f.w.WriteHeader(http.StatusOK)
	}
	if _, err := io.WriteString(f.w, s); err != nil {
		f.broken = true
		return
	}
	if err := f.rc.Flush(); err != nil {
		f.broken = true
	}
}

// end finishes a started feedback: nothing more on success; on failure
// the reason as the last line, then the response is cut (no clean end,
// so a client cannot take it for a success).
func (f *feedback) end(err error) {
	if err == nil {
		return
	}
	f.line(progressError(err))
	panic(http.ErrAbortHandler)
}
