package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

// mmClient is a middleman client whose frames arrive on a channel.
type mmClient struct {
	ws     *websocket.Conn
	frames chan *middleman.Frame
	closed chan struct{}
}

func dialMM(ctx context.Context, base, key string) (*mmClient, error) {
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/mm", nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	if err := ws.Write(ctx, websocket.MessageText, []byte(key)); err != nil {
		ws.CloseNow()
		return nil, err
	}
	for _, want := range []string{"MM OK", ""} {
		_, data, err := ws.Read(ctx)
		if err != nil || (want != "" && string(data) != want) {
			ws.CloseNow()
			return nil, fmt.Errorf("handshake: %q %v", data, err)
		}
	}
	c := &mmClient{ws: ws, frames: make(chan *middleman.Frame, 1024), closed: make(chan struct{})}
	go func() {
		defer close(c.closed)
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if f, err := middleman.Parse(data); err == nil {
				select {
				case c.frames <- f:
				default:
				}
			}
		}
	}()
	return c, nil
}

func (c *mmClient) send(cmd, key, body string, headers ...string) error {
	f := &middleman.Frame{Cmd: cmd, Key: key, Body: []byte(body)}
	for i := 0; i+1 < len(headers); i += 2 {
		f.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, f.Bytes())
}

func (c *mmClient) close() { c.ws.CloseNow(); <-c.closed }

// serveEcho answers every REQ with a RES carrying the same body.
func (c *mmClient) serveEcho(pubs chan<- string) {
	go func() {
		for {
			select {
			case <-c.closed:
				return
			case f := <-c.frames:
				switch f.Cmd {
				case "REQ":
					c.send("RES", f.Key, string(f.Body), "Rid", f.Get("Rid"))
				case "PUB":
					select {
					case pubs <- string(f.Body):
					default:
					}
				}
			}
		}
	}()
}

// await returns the body of the first frame with cmd and key, or "".
func (c *mmClient) await(cmd, key string, d time.Duration) (string, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			if f.Cmd == cmd && f.Key == key {
				return string(f.Body), true
			}
		case <-c.closed:
			return "", false
		case <-timer.C:
			return "", false
		}
	}
}

// TestFaultMiddlemanNodeDownAndGatewayKilled stops each NATS node in turn
// (restarting it after) and finally SIGKILLs the requester's gateway. It
// proves that while a node is down PUB/SUB and REQ/RES across two gateways
// keep working (after the clients' gateways reconnect), and that a client
// whose gateway dies sees its WebSocket end, reconnects through the load
// balancer to another gateway and carries on.
func TestFaultMiddlemanNodeDownAndGatewayKilled(t *testing.T) {
	fc := newFaultCluster(t, 2, "--mm-service-keys", "svc", "--middleman-request-timeout", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	svc, err := dialMM(ctx, fc.gws[0].URL(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	pubs := make(chan string, 64)
	svc.send("SUB", "news", "")
	svc.send("EREQ", "echo", "")
	svc.serveEcho(pubs)

	user, err := dialMM(ctx, fc.gws[1].URL(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	// round sends one PUB and one REQ from the user's gateway to the
	// service's and reports whether both made it.
	n := 0
	round := func(u *mmClient) error {
		n++
		body := strconv.Itoa(n)
		if err := u.send("PUB", "news", body); err != nil {
			return err
		}
		select {
		case got := <-pubs:
			for got != body {
				select {
				case got = <-pubs:
				case <-time.After(2 * time.Second):
					return fmt.Errorf("PUB %s not delivered", body)
				}
			}
		case <-time.After(2 * time.Second):
			return fmt.Errorf("PUB %s not delivered", body)
		}
		if err := u.send("REQ", "echo", body); err != nil {
			return err
		}
		for {
			f, ok := u.awaitAny(4 * time.Second)
			if !ok {
				return fmt.Errorf("REQ %s: no answer", body)
			}
			if f.Cmd == "RES" && string(f.Body) == body {
				return nil
			}
			if f.Cmd == "PUB" && f.Key == "ERROR" {
				return fmt.Errorf("REQ %s: %s", body, f.Body)
			}
		}
	}
	natstest.Eventually(t, 20*time.Second, func() error { return round(user) })

	lost := 0
	for victim := 0; victim < 3; victim++ {
		fc.nats.Stop(victim)
		natstest.Eventually(t, 30*time.Second, func() error { return round(user) })
		for i := 0; i < 20; i++ {
			if err := round(user); err != nil {
				lost++
				t.Logf("node %d down, round failed: %v", victim+1, err)
			}
		}
		fc.nats.Restart(victim)
	}
	if lost > 0 {
		t.Fatalf("%d of 60 rounds failed after the cluster settled with a node down", lost)
	}

	// Kill the user's gateway: its WebSocket must end, not hang.
	fc.gws[1].Kill()
	select {
	case <-user.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("WebSocket still open after its gateway was killed")
	}
	fc.lb.Set(fc.gws[0].URL())
	var again *mmClient
	natstest.Eventually(t, 20*time.Second, func() error {
		c, err := dialMM(ctx, fc.lb.URL(), "svc")
		if err != nil {
			return err
		}
		again = c
		return nil
	})
	defer again.close()
	natstest.Eventually(t, 20*time.Second, func() error { return round(again) })
	t.Logf("middleman fault run: 3 nodes stopped in turn, 60 rounds with a node down, failed=%d; gateway killed, client reconnected", lost)
}

func (c *mmClient) awaitAny(d time.Duration) (*middleman.Frame, bool) {
	select {
	case f := <-c.frames:
		return f, true
	case <-c.closed:
		return nil, false
	case <-time.After(d):
		return nil, false
	}
}
