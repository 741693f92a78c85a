// Command gateway runs a Switchboard gateway: Megaphone channels, httpipe
// pipes, middleman WebSockets and the HTTP relay on one listener, with all
// state in NATS. Without --nats-url it starts an embedded nats-server.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/logging"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("switchboard gateway", buildinfo.Version())
		return 0
	}
	cfg, rest, err := gateway.LoadConfig(args)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(os.Stderr, "gateway: unexpected argument %q\n", rest[0])
		return 2
	}
	logger := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg, logger); err != nil {
		logger.Error("gateway failed", "err", err)
		return 1
	}
	return 0
}
