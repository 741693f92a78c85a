package megaphone

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/service"
	"github.com/switchboard/switchboard/internal/subjects"
)

// writeSlack lets the last event of a poll be written after the deadline
// before a stuck client is cut.
const writeSlack = 5 * time.Second

// api is the echo adapter: it only translates HTTP into Broker calls.
type api struct {
	b         *Broker
	streams   *service.Tracker
	log       *slog.Logger
	bodyLimit int64
	// bodyTimeout bounds the time to send a JSON body; 0 = none.
	bodyTimeout time.Duration
	adminToken  string
}

// mount registers the Megaphone routes on e, with CORS when origins is
// non-empty.
func (h *api) mount(e *echo.Echo, origins []string) {
	var mw []echo.MiddlewareFunc
	if len(origins) > 0 {
		mw = append(mw, middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins: origins,
			AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions},
			AllowHeaders: []string{echo.HeaderContentType, echo.HeaderAuthorization, "Last-Event-ID", echo.HeaderAccept},
			MaxAge:       600,
		}))
	}
	route := func(method, path string, fn echo.HandlerFunc, extra ...echo.MiddlewareFunc) {
		e.Add(method, path, fn, append(mw[:len(mw):len(mw)], extra...)...)
		if len(mw) > 0 {
			e.Add(http.MethodOptions, path, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, mw...)
		}
	}
	// Every route but the /read stream gets the body deadline.
	route(http.MethodPost, "/create", h.create, h.bodyDeadline)
	route(http.MethodPost, "/write/:address/:streamId", h.write, h.bodyDeadline)
	route(http.MethodPost, "/write-batch", h.writeBatch, h.bodyDeadline)
	route(http.MethodPost, "/channelsExists", h.channelsExists, h.bodyDeadline)
	route(http.MethodGet, "/read/:address", h.read)
	if h.adminToken != "" {
		e.GET("/admin/channels", h.adminList, h.bodyDeadline, h.admin)
		e.DELETE("/admin/channels/:address", h.adminDelete, h.bodyDeadline, h.admin)
	}
}

// bodyDeadline gives the client http.body_timeout to send its body.
func (h *api) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		httpx.BodyDeadline(c.Response(), c.Request(), h.bodyTimeout)
		return next(c)
	}
}

// maxAddressLen bounds a channel address: the addresses the gateway issues
// are shorter (config.MaxMegaphoneAgentLen keeps them so).
const maxAddressLen = subjects.MaxNameLen

// address returns path parameter name as a channel address: decoded once
// (see [httpx.PathParam]) and at most maxAddressLen bytes.
func (h *api) address(c echo.Context, name string) (string, error) {
	v, err := h.param(c, name)
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
func (h *api) param(c echo.Context, name string) (string, error) {
	v, err := httpx.PathParam(c.Request(), c.Param(name))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBadRequest, name, err)
	}
	return v, nil
}

// fail renders err in the {"code","message"} envelope.
func (h *api) fail(c echo.Context, err error) error {
	status, code := StatusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		h.log.Error("request failed", "route", c.Path(), "err", err)
		msg = "internal error"
	}
	httpx.WriteError(c.Response(), status, code, msg)
	return nil
}

// body reads the request body up to the configured limit, within the
// configured time.
func (h *api) body(c echo.Context) ([]byte, error) {
	r := http.MaxBytesReader(c.Response(), c.Request().Body, h.bodyLimit)
	raw, err := io.ReadAll(r)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%w: request body exceeds http.body_limit of %s", ErrTooLarge, config.ByteSize(h.bodyLimit))
	case httpx.IsTimeout(err):
		return nil, fmt.Errorf("%w: request body not received within http.body_timeout of %s", ErrBodyTimeout, h.bodyTimeout)
	case err != nil:
		return nil, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	return raw, nil
}

// jsonBody requires Content-Type application/json and reads the body.
func (h *api) jsonBody(c echo.Context) ([]byte, error) {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != echo.MIMEApplicationJSON {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != echo.MIMEApplicationJSON {
			return nil, ErrMediaType
		}
	}
	return h.body(c)
}

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
func (h *api) create(c echo.Context) error {
	raw, err := h.body(c)
	if err != nil {
		return h.fail(c, err)
	}
	var req createRequest
	if json.Unmarshal(raw, &req) == nil {
		if err := CheckProtocols(req.Protocols); err != nil {
			return h.fail(c, err)
		}
	}
	ch, err := h.b.Create(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, createResponse{
		ChannelID: ch.ID, ProducerAddress: ch.ProducerAddress, ConsumerAddress: ch.ConsumerAddress,
		AgentName: ch.Agent, Protocols: []string{Protocol},
	})
}

// write: POST /write/{address}/{stream-id}.
func (h *api) write(c echo.Context) error {
	raw, err := h.jsonBody(c)
	if err != nil {
		return h.fail(c, err)
	}
	addr, err := h.address(c, "address")
	if err != nil {
		return h.fail(c, err)
	}
	sid, err := h.param(c, "streamId")
	if err != nil {
		return h.fail(c, err)
	}
	if err := h.b.Write(c.Request().Context(), addr, sid, raw); err != nil {
		return h.fail(c, err)
	}
	return c.JSONBlob(http.StatusCreated, statusOK)
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
func (h *api) writeBatch(c echo.Context) error {
	raw, err := h.jsonBody(c)
	if err != nil {
		return h.fail(c, err)
	}
	var req batchRequest
	if err := decode(raw, &req); err != nil {
		return h.fail(c, err)
	}
	channels, err := req.list()
	if err != nil {
		return h.fail(c, err)
	}
	if req.Messages == nil {
		return h.fail(c, fmt.Errorf("%w: missing field messages", ErrBadRequest))
	}
	msgs := make([]BatchMessage, len(*req.Messages))
	for i, m := range *req.Messages {
		if m.StreamID == nil || m.Body == nil {
			return h.fail(c, fmt.Errorf("%w: messages[%d] needs streamId and body", ErrBadRequest, i))
		}
		msgs[i] = BatchMessage{StreamID: *m.StreamID, Body: m.Body}
	}
	failures, err := h.b.WriteBatch(c.Request().Context(), channels, msgs)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusCreated, map[string][]Failure{"failures": failures})
}

// channelsExists: POST /channelsExists.
func (h *api) channelsExists(c echo.Context) error {
	raw, err := h.jsonBody(c)
	if err != nil {
		return h.fail(c, err)
	}
	var req channelList
	if err := decode(raw, &req); err != nil {
		return h.fail(c, err)
	}
	channels, err := req.list()
	if err != nil {
		return h.fail(c, err)
	}
	out := make(map[string]bool, len(channels))
	for _, ch := range channels {
		ok, err := h.b.Exists(c.Request().Context(), ch)
		if err != nil {
			return h.fail(c, err)
		}
		out[ch] = ok
	}
	return c.JSON(http.StatusOK, map[string]map[string]bool{"channels": out})
}

// read: GET /read/{consumer}. NDJSON by default, SSE on
// Accept: text/event-stream (resuming after Last-Event-ID).
func (h *api) read(c echo.Context) error {
	arrival := time.Now()
	req := c.Request()
	sse := strings.Contains(req.Header.Get(echo.HeaderAccept), "text/event-stream")
	var after uint64
	if v := req.Header.Get("Last-Event-ID"); sse && v != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return h.fail(c, fmt.Errorf("%w: Last-Event-ID is not an event id", ErrBadRequest))
		}
		after = n
	}
	kind := "poll"
	if sse {
		kind = "sse"
	}
	addr, err := h.address(c, "address")
	if err != nil {
		return h.fail(c, err)
	}
	ctx, done, err := h.streams.Begin(req.Context(), kind)
	if err != nil {
		return h.fail(c, ErrUnavailable)
	}
	defer done()
	p, err := h.b.Open(ctx, addr, after, arrival)
	if err != nil {
		return h.fail(c, err)
	}
	defer p.Close()
	res := c.Response()
	_ = http.NewResponseController(res.Writer).SetWriteDeadline(p.Deadline().Add(writeSlack))
	res.Header().Set("Cache-Control", "no-cache")
	res.Header().Set("X-Accel-Buffering", "no")
	emit := ndjson(res)
	if sse {
		res.Header().Set(echo.HeaderContentType, "text/event-stream")
		emit = eventStream(res)
	} else {
		res.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	}
	res.WriteHeader(http.StatusOK)
	if sse {
		_, _ = io.WriteString(res, "retry: 500\n\n")
	}
	res.Flush()
	if err := p.Run(ctx, emit); err != nil {
		h.log.Debug("poll ended early", "err", err)
	}
	return nil
}

// ndjson writes each event as one whole line in one flushed write.
func ndjson(res *echo.Response) func(Event) error {
	var buf []byte
	return func(ev Event) error {
		buf = append(append(buf[:0], ev.Data...), '\n')
		if _, err := res.Write(buf); err != nil {
			return err
		}
		return http.NewResponseController(res.Writer).Flush()
	}
}

// eventStream writes each event as one SSE message with its cursor as id.
func eventStream(res *echo.Response) func(Event) error {
	var buf []byte
	return func(ev Event) error {
		buf = append(buf[:0], "id: "...)
		buf = strconv.AppendUint(buf, ev.Cursor, 10)
		buf = append(buf, "\ndata: "...)
		buf = append(append(buf, ev.Data...), "\n\n"...)
		if _, err := res.Write(buf); err != nil {
			return err
		}
		return http.NewResponseController(res.Writer).Flush()
	}
}

// admin checks the bearer token.
func (h *api) admin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		got, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.adminToken)) != 1 {
			return h.fail(c, ErrUnauthorized)
		}
		return next(c)
	}
}

func (h *api) adminList(c echo.Context) error {
	list, err := h.b.List(c.Request().Context())
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, list)
}

func (h *api) adminDelete(c echo.Context) error {
	addr, err := h.address(c, "address")
	if err != nil {
		return h.fail(c, err)
	}
	if err := h.b.Delete(c.Request().Context(), addr); err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "OK"})
}
