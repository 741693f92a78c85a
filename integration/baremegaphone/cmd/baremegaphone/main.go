// Command baremegaphone runs Megaphone's floor (package baremegaphone) as a
// process of its own, to be measured beside the gateway and raw JetStream
// publishes:
//
//	baremegaphone -listen 127.0.0.1:25010 -nats-listen 127.0.0.1:25011 -data-dir /tmp/bare [-close] [-debug 127.0.0.1:25012]
//
// -debug serves net/http/pprof on a separate listener.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard/switchboard/integration/baremegaphone"
)

func main() {
	var cfg baremegaphone.Config
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8090", "HTTP listen address")
	flag.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4333", "embedded NATS listen address")
	flag.StringVar(&cfg.StoreDir, "data-dir", "", "JetStream store directory (required)")
	flag.BoolVar(&cfg.Close, "close", false, "end every /read response with Connection: close")
	debug := flag.String("debug", "", "net/http/pprof listen address (empty: none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *debug); err != nil {
		fmt.Fprintln(os.Stderr, "baremegaphone:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg baremegaphone.Config, debug string) error {
	if cfg.StoreDir == "" {
		return fmt.Errorf("-data-dir is required")
	}
	b, err := baremegaphone.Start(cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	if debug != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		srv := &http.Server{Addr: debug, Handler: mux}
		go func() { _ = srv.ListenAndServe() }()
		defer srv.Close()
	}
	fmt.Fprintf(os.Stderr, "baremegaphone: http %s nats %s\n", b.Addr(), b.NATSURL())
	<-ctx.Done()
	return nil
}
