package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/internal/httpx"
)

// newRouter builds a router: recovery, metrics and logging middleware,
// operational routes, then every service's routes. Without services (while
// starting) every other route answers 503 NOT_READY, so no request reaches
// a half-provisioned service.
func (g *Gateway) newRouter(services []namedService) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler
	e.Use(releaseContext)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			g.log.Error("handler panic", "route", c.Path(), "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(g.observe)
	e.Use(g.requireClientCert)
	e.GET("/healthz", g.healthz)
	e.GET("/readyz", g.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{Registry: g.registry})))
	if services == nil {
		e.RouteNotFound("/*", func(c echo.Context) error {
			msg := "gateway is starting: " + g.notReadyReason()
			if err := g.Err(); err != nil {
				msg = err.Error()
			}
			httpx.WriteError(c.Response(), http.StatusServiceUnavailable, codeNotReady, msg)
			return nil
		})
		return e
	}
	for _, s := range services {
		mountRoutes(e, s.Routes(), g.cfg.HTTP.CORSOrigins)
	}
	g.mountNATSWebsocket(e)
	return e
}

// releaseContext is the outermost middleware: once a request is done it
// answers any error still pending, then clears the echo context before
// echo returns it to its pool. A pooled context otherwise keeps its last
// request and response, and through the response net/http's connection
// with its 4 KiB + 4 KiB + 2 KiB of buffers, until the pool is reused or
// two garbage collections pass: after a burst of 3,000 concurrent
// Megaphone polls or WebSocket handshakes, whose connections were taken
// over (hijacked) and whose buffers nothing else uses, that was ~10 KiB of
// dead buffers held per connection on an idle gateway.
func releaseContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			c.Error(err)
		}
		c.Reset(nil, nil)
		return nil
	}
}

// healthz answers 200 while the process can serve or is still starting,
// and 503 once it cannot: its NATS connection closed for good
// (NATS_CLOSED) or start-up failed (START_FAILED). The gateway then exits;
// the 503 tells a supervisor that has not seen the exit yet.
func (g *Gateway) healthz(c echo.Context) error {
	if err := g.Err(); err != nil {
		code := codeStartFailed
		if errors.Is(err, ErrNATSClosed) {
			code = codeNATSClosed
		}
		httpx.WriteError(c.Response(), http.StatusServiceUnavailable, code, err.Error())
		return nil
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 while the gateway is provisioned and not stopping,
// NATS is connected and JetStream answers; else 503 with the reason.
func (g *Gateway) readyz(c echo.Context) error {
	notReady := func(msg string) error {
		httpx.WriteError(c.Response(), http.StatusServiceUnavailable, codeNotReady, msg)
		return nil
	}
	if g.stopping.Load() {
		return notReady("gateway is shutting down")
	}
	if err := g.Err(); err != nil {
		return notReady(err.Error())
	}
	select {
	case <-g.ready:
	default:
		return notReady(g.notReadyReason())
	}
	nc := g.nc.Load()
	if !nc.IsConnected() {
		return notReady("nats: " + nc.Status().String())
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if _, err := g.js.AccountInfo(ctx); err != nil {
		return notReady("jetstream: " + err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// errorHandler renders echo's own errors (404 route, 405, body limit) in
// the JSON envelope.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = http.StatusText(status)
		if m, isStr := he.Message.(string); isStr {
			msg = m
		}
	}
	code := httpx.CodeInternal
	switch status {
	case http.StatusBadRequest:
		code = httpx.CodeBadRequest
	case http.StatusNotFound:
		code = httpx.CodeNotFound
	case http.StatusMethodNotAllowed:
		code = "METHOD_NOT_ALLOWED"
	case http.StatusRequestEntityTooLarge:
		code = httpx.CodeTooLarge
	case http.StatusUnsupportedMediaType:
		code = httpx.CodeUnsupportedMediaType
	case http.StatusUnauthorized:
		code = httpx.CodeUnauthorized
	}
	httpx.WriteError(c.Response(), status, code, msg)
}

// newObserve returns the middleware that records request metrics by route
// template and logs requests; both routers share it.
func (g *Gateway) newObserve() echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_http_requests_total",
		Help: "HTTP requests by route template, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchboard_http_request_duration_seconds",
		Help:    "HTTP request duration by route template (long polls and streams included).",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 20, 60},
	}, []string{"route"})
	g.registry.MustRegister(requests, duration)
	log := g.log.With("component", "http")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			elapsed := time.Since(start)
			requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Inc()
			duration.WithLabelValues(route).Observe(elapsed.Seconds())
			level := slog.LevelDebug
			switch {
			case route == "/healthz" || route == "/readyz":
				// A probe's 503 is a state, said once by the
				// gateway's own log lines, not per probe.
			case status >= 500:
				level = slog.LevelWarn
			case status >= 400:
				level = slog.LevelInfo
			}
			ctx := c.Request().Context()
			if !log.Enabled(ctx, level) {
				return nil
			}
			attrs := []any{"method", c.Request().Method, "route", route, "status", status,
				"bytes_out", c.Response().Size, "duration", elapsed, "remote", c.RealIP()}
			if level == slog.LevelDebug {
				// Paths hold capabilities (producer addresses, channel
				// names): only debug logs carry them.
				attrs = append(attrs, "path", c.Request().URL.EscapedPath())
			}
			log.Log(ctx, level, "request", attrs...)
			return nil
		}
	}
}
