package gateway

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchboard/switchboard/internal/protocol"
)

// Protocol is what the gateway needs from a protocol it hosts. The
// interface belongs to its consumer: protocols only provide the methods.
type Protocol interface {
	// Provision creates the NATS resources the protocol needs. It must be
	// idempotent and safe when several gateways run it at once.
	Provision(ctx context.Context) error
	// Routes are the protocol's HTTP routes.
	Routes() []protocol.Route
	// Close stops background work. It is called after tracked streams
	// ended and before the NATS connection drains.
	Close() error
}

// extensionMethods are routed for Method "" besides echo's standard ones,
// so WebDAV and cache-purge style upstreams work through the relay.
var extensionMethods = []string{"PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "LINK", "UNLINK", "QUERY"}

// mountRoutes registers routes on e. A CORS route also gets the
// http.cors_origins middleware and an OPTIONS preflight route when the
// allow-list is not empty.
func mountRoutes(e *echo.Echo, routes []protocol.Route, corsOrigins []string) {
	var cors []echo.MiddlewareFunc
	if len(corsOrigins) > 0 {
		cors = append(cors, middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins: corsOrigins,
			AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions},
			AllowHeaders: []string{echo.HeaderContentType, echo.HeaderAuthorization, "Last-Event-ID", echo.HeaderAccept},
			MaxAge:       600,
		}))
	}
	for _, r := range routes {
		h := wrapHandler(r.Handler)
		var mw []echo.MiddlewareFunc
		if r.CORS {
			mw = cors
		}
		if r.Method == "" {
			e.Any(r.Path, h, mw...)
			e.Match(extensionMethods, r.Path, h, mw...)
			continue
		}
		e.Add(r.Method, r.Path, h, mw...)
		if r.CORS && len(cors) > 0 {
			e.Add(http.MethodOptions, r.Path, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, cors...)
		}
	}
}

// wrapHandler adapts a net/http handler to echo, copying echo's path
// parameters into the request's path values (r.PathValue).
func wrapHandler(h http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		values := c.ParamValues()
		for i, name := range c.ParamNames() {
			if i < len(values) {
				r.SetPathValue(name, values[i])
			}
		}
		h.ServeHTTP(c.Response(), r)
		return nil
	}
}
