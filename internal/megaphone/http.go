package megaphone

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/netpoll"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// writeSlack lets the last event of a poll be written after the deadline
// before a stuck client is cut.
const writeSlack = 5 * time.Second

// api is the HTTP adapter: it only translates HTTP into Broker calls.
type api struct {
	b         *Broker
	streams   *protocol.Tracker
	log       *slog.Logger
	bodyLimit int64
	// bodyTimeout bounds the time to send a JSON body; 0 = none.
	bodyTimeout time.Duration
	adminToken  string
	// parkPolls takes HTTP/1.1 polls over (see parked).
	parkPolls bool
	// opening bounds the polls being opened at once (see maxOpening).
	opening chan struct{}
	// waiting holds the parked polls taken over while every opening
	// slot was taken, oldest first (see openQueued).
	qmu      sync.Mutex
	waiting  []*queued
	stopHook sync.Once // shutdown refuses the waiting polls
	burst    bool      // holds a burstGC reference (see burstQueue); guarded by qmu
	// parked are the parked polls, which shutdown ends (see parkedSet).
	parked parkedSet
	// poller watches the sockets of parked polls.
	poller *netpoll.Poller
	// serveAgain hands a parked poll's connection back to net/http at its
	// end (protocol.Deps.ServeAgain; nil: closed).
	serveAgain func(net.Conn)
}

// maxOpening is how many /read polls a gateway opens at once (claim,
// channel refresh, wake-up subscription: a few JetStream round trips
// each); the others wait their turn. A burst of thousands of readers
// then does not have thousands of handlers deep in those calls at the
// same time, whose grown stacks and garbage set the heap's high-water
// mark that a quiet gateway keeps as RSS (3,000 polls opened at once:
// RSS per parked poll, median of 7 paired runs, 36.8 -> 31.4 KiB). At
// ~1 ms per open, 64 at a time opens 3,000 in well under a second.
var maxOpening = 64

// handlerFunc handles one route; the error it returns is answered by
// [api.fail].
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes are the Megaphone routes: the public ones with CORS, the /admin
// ones (without) when an admin token is set. Every route but the /read
// stream gets the body deadline.
func (h *api) routes() []protocol.Route {
	routes := []protocol.Route{
		h.route(http.MethodPost, "/create", true, h.create),
		h.route(http.MethodPost, "/write/:address/:streamId", true, h.write),
		h.route(http.MethodPost, "/write-batch", true, h.writeBatch),
		h.route(http.MethodPost, "/channelsExists", true, h.channelsExists),
		h.route(http.MethodGet, "/read/:address", false, h.read),
	}
	for i := range routes {
		routes[i].CORS = true
	}
	if h.adminToken != "" {
		routes = append(routes,
			h.route(http.MethodGet, "/admin/channels", true, h.admin(h.adminList)),
			h.route(http.MethodDelete, "/admin/channels/:address", true, h.admin(h.adminDelete)))
	}
	return routes
}

// route serves fn at method and path, answering its error with
// [api.fail]; with deadline the client gets http.body_timeout to send its
// body.
func (h *api) route(method, path string, deadline bool, fn handlerFunc) protocol.Route {
	return protocol.Route{Method: method, Path: path, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deadline {
			httpx.BodyDeadline(w, r, h.bodyTimeout)
		}
		if err := fn(w, r); err != nil {
			h.fail(w, path, err)
		}
	})}
}

// maxAddressLen bounds a channel address: the addresses the gateway issues
// are shorter (MaxAgentLen keeps them so).
const maxAddressLen = subjects.MaxNameLen

// address returns path parameter name as a channel address: decoded once
// (see [httpx.PathParam]) and at most maxAddressLen bytes.
func (h *api) address(r *http.Request, name string) (string, error) {
	v, err := h.param(r, name)
	if err != nil {
		return "", err
	}
	return v, checkAddressLen(v)
}

// checkAddressLen refuses an address longer than maxAddressLen.
func checkAddressLen(addr string) error {
	if len(addr) > maxAddressLen {
		return fmt.Errorf("%w: channel address of %d bytes is longer than %d", ErrBadRequest, len(addr), maxAddressLen)
	}
	return nil
}

// param returns path parameter name, percent-decoded exactly once.
func (h *api) param(r *http.Request, name string) (string, error) {
	v, err := httpx.PathParam(r, r.PathValue(name))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBadRequest, name, err)
	}
	return v, nil
}

// fail renders err in the {"code","message"} envelope; route is the
// template of the failed route, for the log.
func (h *api) fail(w http.ResponseWriter, route string, err error) {
	status, code := StatusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", RetryAfter)
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		h.log.Error("request failed", "route", route, "err", err)
		msg = "internal error"
	}
	httpx.WriteError(w, status, code, msg)
}

// writeJSON answers v as one line of JSON with status. A failed write is
// a client gone: there is no one left to answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeBlob answers the JSON document raw with status. The Content-Type
// value is a slice of its own per response (one small allocation, no
// canonicalisation): a value shared between responses would change every
// later answer if any code edited a response's header value in place.
func writeBlob(w http.ResponseWriter, status int, raw []byte) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// body reads the request body up to the configured limit, within the
// configured time.
func (h *api) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return h.bodyInto(w, r, nil)
}

// sizedBodyMax bounds the bodies bodyInto reads in one go into a buffer
// of their announced Content-Length: the buffer is allocated before the
// bytes arrive, so a client announcing large bodies and sending nothing
// must not get more than this per request (about net/http's own bufio
// buffers). Larger bodies are read as they arrive.
const sizedBodyMax = 8 << 10

// bodyInto is body, appending to buf (its contents are kept) when that
// can be done in one read: a body of a Content-Length within the limit
// and sizedBodyMax.
func (h *api) bodyInto(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	var raw []byte
	var err error
	if n := r.ContentLength; n >= 0 && n <= min(h.bodyLimit, sizedBodyMax) && r.Body != nil {
		raw, err = readSized(r.Body, buf, int(n))
	} else {
		raw, err = io.ReadAll(http.MaxBytesReader(w, r.Body, h.bodyLimit))
	}
	if err != nil {
		return nil, bodyError(err, h.bodyLimit, h.bodyTimeout)
	}
	// Read to its end: closed, and net/http's own again, net/http need
	// not drain it after the handler (one read and an allocation less per
	// request).
	httpx.EndBody(r)
	_ = r.Body.Close()
	return raw, nil
}

// bodyError is the error of a failed body read (in a function of its
// own: the MaxBytesError target escapes, and only a failure should pay
// for it).
func bodyError(err error, limit int64, timeout time.Duration) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: request body exceeds http.body_limit of %s", ErrTooLarge, config.ByteSize(limit))
	case httpx.IsTimeout(err):
		return fmt.Errorf("%w: request body not received within http.body_timeout of %s", ErrBodyTimeout, timeout)
	default:
		return fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
}

// readSized appends the n bytes of body to buf and reads to the body's
// end, so that net/http sees the body done (as io.ReadAll leaves it). A
// body longer than n fails: net/http never gives one.
func readSized(body io.Reader, buf []byte, n int) ([]byte, error) {
	buf = slices.Grow(buf, n)
	start := len(buf)
	buf = buf[:start+n]
	if _, err := io.ReadFull(body, buf[start:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	var one [1]byte
	switch k, err := body.Read(one[:]); {
	case k > 0:
		return nil, errors.New("body longer than its Content-Length")
	case err != nil && !errors.Is(err, io.EOF):
		return nil, err
	}
	return buf, nil
}

// jsonBody requires Content-Type application/json and reads the body.
func (h *api) jsonBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return h.jsonBodyInto(w, r, nil)
}

// jsonBodyInto is jsonBody appending to buf (see bodyInto).
func (h *api) jsonBodyInto(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, ErrMediaType
		}
	}
	return h.bodyInto(w, r, buf)
}

// writeBodies recycles the body buffers of /write: the body is copied
// into the stored line, so the buffer is free once the write returns.
var writeBodies = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = sizedBodyMax

type createRequest struct {
	Protocols []string `json:"protocols"`
}

type createResponse struct {
	ChannelID       string   `json:"channelId"`
	ProducerAddress string   `json:"producerAddress"`
	ConsumerAddress string   `json:"consumerAddress"`
	AgentName       string   `json:"agentName"`
	Protocols       []string `json:"protocols"`
}

// create: POST /create. A missing or unparsable body is no body.
func (h *api) create(w http.ResponseWriter, r *http.Request) error {
	raw, err := h.body(w, r)
	if err != nil {
		return err
	}
	var req createRequest
	if json.Unmarshal(raw, &req) == nil {
		if err := CheckProtocols(req.Protocols); err != nil {
			return err
		}
	}
	ch, err := h.b.Create(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, createResponse{
		ChannelID: ch.ID, ProducerAddress: ch.ProducerAddress, ConsumerAddress: ch.ConsumerAddress,
		AgentName: ch.Agent, Protocols: []string{Protocol},
	})
	return nil
}

// write: POST /write/{address}/{stream-id}.
func (h *api) write(w http.ResponseWriter, r *http.Request) error {
	bp := writeBodies.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledBody {
			writeBodies.Put(bp)
		}
	}()
	raw, err := h.jsonBodyInto(w, r, (*bp)[:0])
	if raw != nil {
		*bp = raw
	}
	if err != nil {
		return err
	}
	addr, err := h.address(r, "address")
	if err != nil {
		return err
	}
	sid, err := h.param(r, "streamId")
	if err != nil {
		return err
	}
	if err := h.b.Write(r.Context(), addr, sid, raw); err != nil {
		return err
	}
	writeBlob(w, http.StatusCreated, statusOK)
	return nil
}

var statusOK = []byte(`{"status":"OK"}` + "\n")

// channelList is the channels|channelIds field of batch and exists.
type channelList struct {
	Channels   *[]string `json:"channels"`
	ChannelIDs *[]string `json:"channelIds"`
}

// list returns the channels given; an address over maxAddressLen is a bad
// request.
func (l channelList) list() ([]string, error) {
	var out []string
	switch {
	case l.Channels != nil && l.ChannelIDs != nil:
		return nil, fmt.Errorf("%w: give either channels or channelIds, not both", ErrBadRequest)
	case l.Channels != nil:
		out = *l.Channels
	case l.ChannelIDs != nil:
		out = *l.ChannelIDs
	default:
		return nil, fmt.Errorf("%w: missing field channels (or channelIds)", ErrBadRequest)
	}
	for i, ch := range out {
		if err := checkAddressLen(ch); err != nil {
			return nil, fmt.Errorf("channels[%d]: %w", i, err)
		}
	}
	return out, nil
}

type batchRequest struct {
	channelList
	Messages *[]struct {
		StreamID *string         `json:"streamId"`
		Body     json.RawMessage `json:"body"`
	} `json:"messages"`
}

func decode(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return nil
}

// writeBatch: POST /write-batch, always 201 with the failures.
func (h *api) writeBatch(w http.ResponseWriter, r *http.Request) error {
	raw, err := h.jsonBody(w, r)
	if err != nil {
		return err
	}
	var req batchRequest
	if err := decode(raw, &req); err != nil {
		return err
	}
	channels, err := req.list()
	if err != nil {
		return err
	}
	if req.Messages == nil {
		return fmt.Errorf("%w: missing field messages", ErrBadRequest)
	}
	msgs := make([]BatchMessage, len(*req.Messages))
	for i, m := range *req.Messages {
		if m.StreamID == nil || m.Body == nil {
			return fmt.Errorf("%w: messages[%d] needs streamId and body", ErrBadRequest, i)
		}
		msgs[i] = BatchMessage{StreamID: *m.StreamID, Body: m.Body}
	}
	failures, err := h.b.WriteBatch(r.Context(), channels, msgs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string][]Failure{"failures": failures})
	return nil
}

// channelsExists: POST /channelsExists.
func (h *api) channelsExists(w http.ResponseWriter, r *http.Request) error {
	raw, err := h.jsonBody(w, r)
	if err != nil {
		return err
	}
	var req channelList
	if err := decode(raw, &req); err != nil {
		return err
	}
	channels, err := req.list()
	if err != nil {
		return err
	}
	out := make(map[string]bool, len(channels))
	for _, ch := range channels {
		ok, err := h.b.Exists(r.Context(), ch)
		if err != nil {
			return err
		}
		out[ch] = ok
	}
	writeJSON(w, http.StatusOK, map[string]map[string]bool{"channels": out})
	return nil
}

// read: GET /read/{consumer}. NDJSON by default, SSE on
// Accept: text/event-stream (resuming after Last-Event-ID).
func (h *api) read(w http.ResponseWriter, r *http.Request) error {
	arrival := time.Now()
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	var after uint64
	if v := r.Header.Get("Last-Event-ID"); sse && v != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: Last-Event-ID is not an event id", ErrBadRequest)
		}
		after = n
	}
	kind := "poll"
	if sse {
		kind = "sse"
	}
	addr, err := h.address(r, "address")
	if err != nil {
		return err
	}
	// The stream outlives the handler when the poll is parked: its
	// context is not the request's, which ends when the handler returns
	// (nor does it keep the request's alive), but the tracker's own,
	// which ends when shutdown begins and which every poll shares, so a
	// poll has no context of its own. The handler that serves the poll
	// itself follows the client below.
	ctx, release, err := h.streams.BeginDrain(h.streams.StopContext(), kind)
	if err != nil {
		return fmt.Errorf("megaphone: %w", err)
	}
	if !h.openSlot() {
		// Every opening slot is taken (a burst of readers). A poll that
		// can be parked is taken over from net/http now and the handler
		// returns, so that while it waits its turn it holds neither
		// net/http's buffers nor a goroutine (see openQueued).
		if h.parkPolls {
			if conn, reusable, ok := hijack(w, r); ok {
				h.enqueue(&queued{conn: conn, reusable: reusable, hdr: w.Header().Clone(), ctx: ctx, release: release,
					addr: addr, after: after, arrival: arrival, sse: sse})
				return nil
			}
		}
		select {
		case h.opening <- struct{}{}:
		case <-ctx.Done(): // the gateway is shutting down
			release()
			return protocol.ErrShuttingDown
		}
	}
	p, err := h.b.Open(ctx, addr, after, arrival)
	h.releaseSlot()
	if err != nil {
		release()
		return err
	}
	setStreamHeaders(w.Header(), sse)
	if h.parkPolls && h.park(w, r, ctx, p, sse, release) {
		return nil
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.Context(), cancel)()
	defer p.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(p.Deadline().Add(writeSlack))
	emit := ndjson(w)
	if sse {
		emit = eventStream(w)
	}
	w.WriteHeader(http.StatusOK)
	if sse {
		_, _ = io.WriteString(w, "retry: 500\n\n")
	}
	_ = flush(w)
	if err := p.Run(ctx, emit); err != nil {
		h.log.Debug("poll ended early", "err", err)
	}
	return nil
}

// setStreamHeaders sets the headers of a poll's chunked 200.
func setStreamHeaders(hdr http.Header, sse bool) {
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	if sse {
		hdr.Set("Content-Type", "text/event-stream")
	} else {
		hdr.Set("Content-Type", "application/x-ndjson")
	}
}

// flush sends what w holds to the client and reports a failure. Unlike
// http.ResponseController, which stops at the first http.Flusher (a
// wrapper's Flush drops the error), it looks through wrappers for the
// writer that reports one: an event counts as delivered, and leaves the
// buffer, only once it was sent.
func flush(w http.ResponseWriter) error {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }:
			return t.FlushError()
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		case http.Flusher:
			t.Flush()
			return nil
		default:
			return http.ErrNotSupported
		}
	}
}

// ndjson writes each event as one whole line in one flushed write.
func ndjson(w http.ResponseWriter) func(Event) error {
	var buf []byte
	return func(ev Event) error {
		buf = append(append(buf[:0], ev.Data...), '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return flush(w)
	}
}

// eventStream writes each event as one SSE message with its cursor as id.
func eventStream(w http.ResponseWriter) func(Event) error {
	var buf []byte
	return func(ev Event) error {
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendUint(buf, ev.Cursor, 10)
		buf = append(buf, "\ndata: "...)
		buf = append(append(buf, ev.Data...), "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return flush(w)
	}
}

// admin checks the bearer token before next.
func (h *api) admin(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.adminToken)) != 1 {
			return ErrUnauthorized
		}
		return next(w, r)
	}
}

// adminList: GET /admin/channels.
func (h *api) adminList(w http.ResponseWriter, r *http.Request) error {
	list, err := h.b.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// adminDelete: DELETE /admin/channels/{address}.
func (h *api) adminDelete(w http.ResponseWriter, r *http.Request) error {
	addr, err := h.address(r, "address")
	if err != nil {
		return err
	}
	if err := h.b.Delete(r.Context(), addr); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
	return nil
}
