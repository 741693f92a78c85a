// Package barerelay is the floor of the HTTP relay for benchmarks: the
// plainest relay through NATS that the project's libraries allow, with
// none of the relay's work (no headers, streaming, limits, checks or flow
// control). A net/http handler sends the request's path as one NATS
// request; a responder GETs its target with net/http's client and answers
// with the body. Whatever the real relay costs beyond it is the relay's
// own; whatever it costs beyond a direct request is the price of the two
// HTTP exchanges and the NATS round trip themselves. Never used by the
// gateway or the agent.
package barerelay

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// Subject is the subject the two halves meet on.
const Subject = "barerelay.get"

// Front is the gateway's half: each request becomes one NATS request with
// the request's path as payload; the reply's payload is the 200 body, an
// empty one a 502.
func Front(nc *nats.Conn) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, err := nc.Request(Subject, []byte(r.URL.Path), 5*time.Second)
		if err != nil || len(m.Data) == 0 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(m.Data)
	})
}

// Back is the agent's half: workers goroutines answer the requests on nc,
// each with the body of a GET of target + path through client, or with
// constant when target is "" (the NATS round trip alone), until ctx ends.
func Back(ctx context.Context, nc *nats.Conn, client *http.Client, target string, constant []byte, workers int) error {
	msgs := make(chan *nats.Msg, 4*workers)
	sub, err := nc.ChanSubscribe(Subject, msgs)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	for range workers {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					_ = m.Respond(answer(client, target, constant, string(m.Data)))
				}
			}
		}()
	}
	return nc.Flush()
}

func answer(client *http.Client, target string, constant []byte, path string) []byte {
	if target == "" {
		return constant
	}
	resp, err := client.Get(target + path)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil
	}
	return body
}
