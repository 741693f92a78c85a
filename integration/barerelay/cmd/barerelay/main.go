// Command barerelay runs one half of the relay's floor (package barerelay)
// as a process of its own, to be measured beside the gateway and agent
// processes, HAProxy and an ssh tunnel (README: HTTP relay, "The floor").
//
//	barerelay -mode front -listen 127.0.0.1:8090 -nats-listen 127.0.0.1:4333
//	barerelay -mode back -nats nats://127.0.0.1:4333 -target http://127.0.0.1:9000
//
// The front embeds a nats-server (as the gateway does) and uses an
// in-process connection; the back connects over TCP (as an agent does).
// -target "" makes the back answer 12 constant bytes: the HTTP serving and
// the NATS round trip alone, with no request to any target.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/integration/barerelay"
)

func main() {
	mode := flag.String("mode", "front", "front (HTTP + embedded NATS) or back (responder)")
	listen := flag.String("listen", "127.0.0.1:8090", "front: HTTP listen address")
	natsListen := flag.String("nats-listen", "127.0.0.1:4333", "front: embedded NATS listen address")
	natsURL := flag.String("nats", "nats://127.0.0.1:4333", "back: NATS URL")
	target := flag.String("target", "", `back: upstream base URL; "" answers 12 constant bytes`)
	workers := flag.Int("workers", 16, "back: concurrent requests")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *mode {
	case "front":
		err = front(ctx, *listen, *natsListen)
	case "back":
		err = back(ctx, *natsURL, *target, *workers)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "barerelay:", err)
		os.Exit(1)
	}
}

func front(ctx context.Context, listen, natsListen string) error {
	host, p, err := net.SplitHostPort(natsListen)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return err
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats-server on %s not ready", natsListen)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer nc.Close()
	srv := &http.Server{Addr: listen, Handler: barerelay.Front(nc), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func back(ctx context.Context, url, target string, workers int) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 128
	client := &http.Client{Transport: t}
	if err := barerelay.Back(ctx, nc, client, target, []byte("hello, relay"), workers); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
