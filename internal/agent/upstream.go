package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/subjects"
)

// RunUpstream serves the configured upstreams until ctx ends, then drains:
// it stops taking requests and lets those in flight finish within
// cfg.Shutdown.Grace.
func RunUpstream(ctx context.Context, cfg *AgentUpstream, logger *slog.Logger) error {
	u, err := StartUpstream(ctx, cfg, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
	defer cancel()
	return u.Shutdown(sctx)
}

// Upstream is a running `agent upstream`: one NATS connection and one
// relay.Server (a micro service) per upstream name, so each connection's
// inbox lies in its upstream's subject space and NATS permissions can
// confine it there.
type Upstream struct {
	log     *slog.Logger
	conns   []*nats.Conn
	servers []*relay.Server
	once    sync.Once
	err     error
}

// StartUpstream connects and starts serving every configured upstream.
// Connecting waits until ctx ends; reconnects are forever.
func StartUpstream(ctx context.Context, cfg *AgentUpstream, logger *slog.Logger) (*Upstream, error) {
	targets := cfg.Targets()
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	u := &Upstream{log: logger.With("component", "agent-upstream")}
	for _, name := range names {
		if err := u.add(ctx, cfg, name, targets[name], logger); err != nil {
			u.Kill()
			return nil, err
		}
	}
	return u, nil
}

func (u *Upstream) add(ctx context.Context, cfg *AgentUpstream, name, target string, logger *slog.Logger) error {
	prefix, err := subjects.RelayInbox(name)
	if err != nil {
		return fmt.Errorf("agent: upstream %q: %w", name, err)
	}
	log := logger.With("upstream", name)
	nc, err := connect(ctx, "switchboard-agent upstream="+name, cfg.NATS, log, nats.CustomInboxPrefix(prefix))
	if err != nil {
		return err
	}
	u.conns = append(u.conns, nc)
	srv, err := relay.NewServer(nc, relay.ServerConfig{
		Upstream:      name,
		Target:        target,
		MaxConcurrent: cfg.MaxConcurrent,
		MaxUpgraded:   cfg.MaxUpgraded,
		Metadata:      map[string]string{"agent_version": buildinfo.Version()},
		Logger:        log.With("component", "relay"),
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	u.servers = append(u.servers, srv)
	u.log.Info("serving upstream", "upstream", name, "target", target)
	return nil
}

// Servers returns the relay servers, one per upstream.
func (u *Upstream) Servers() []*relay.Server { return u.servers }

// Shutdown stops taking requests on every upstream, waits for those in
// flight until ctx ends (then cancels them), closes the upgraded
// connections of every upstream last, and drains the connections.
// It is idempotent.
func (u *Upstream) Shutdown(ctx context.Context) error {
	u.once.Do(func() {
		// Every upstream stops taking requests and lets its ordinary ones
		// finish; only then are the upgraded connections closed, on all
		// upstreams, last.
		var wg sync.WaitGroup
		errs := make([]error, len(u.servers))
		for _, phase := range []func(*relay.Server, context.Context) error{(*relay.Server).Drain, (*relay.Server).Shutdown} {
			for i, s := range u.servers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := phase(s, ctx); err != nil {
						errs[i] = err
					}
				}()
			}
			wg.Wait()
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, nc := range u.conns {
			closeConn(dctx, nc)
		}
		for _, err := range errs {
			if err != nil {
				u.err = fmt.Errorf("agent: shutdown: %w", err)
			}
		}
		u.log.Info("agent stopped")
	})
	return u.err
}

// Kill closes every NATS connection at once, as a crash would: callers of
// requests in flight see their agent vanish. Used by tests and on
// start-up failure.
func (u *Upstream) Kill() {
	u.once.Do(func() {
		for _, nc := range u.conns {
			nc.Close()
		}
		for _, s := range u.servers {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = s.Shutdown(ctx)
		}
	})
}
