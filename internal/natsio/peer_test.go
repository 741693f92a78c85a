package natsio_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestNoCheckRefused: a stream without a peer check is refused (fail
// closed).
func TestNoCheckRefused(t *testing.T) {
	snc, rnc := conns(t)
	if _, err := natsio.NewReceiver(context.Background(), rnc, natsio.Options{}); !errors.Is(err, natsio.ErrNoCheck) {
		t.Fatalf("NewReceiver without CheckPeer: %v", err)
	}
	if _, err := natsio.NewSender(context.Background(), snc, snc.NewInbox(), natsio.Options{}); !errors.Is(err, natsio.ErrNoCheck) {
		t.Fatalf("NewSender without CheckPeer: %v", err)
	}
}

// hostile are subjects a malicious peer hands over in place of its own.
var hostile = []string{
	"$JS.API.STREAM.DELETE.SB_MEGAPHONE",
	"$KV.sb_mm_trust.ESUB.victim",
	"sb.relay.other.in.x",
	"sb.>",
	"peer.in.*",
	"peer.in." + strings.Repeat("x", 5000),
	"",
}

// TestForeignSubjectsRefused plays a malicious sender: its hello names
// subjects outside its space as control and reply subject. The receiver
// publishes nothing there, fails the stream with ErrForeignSubject, and
// never counts as connected. A sender told to open a stream on such a
// subject refuses before publishing.
func TestForeignSubjectsRefused(t *testing.T) {
	snc, rnc := conns(t)
	// A third connection sees every message; the receiver's own subject
	// and the test's hellos aside, nothing may be published.
	spyNC, err := nats.Connect(rnc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer spyNC.Close()
	var seen atomic.Int64
	var last atomic.Value
	spy, err := spyNC.Subscribe(">", func(m *nats.Msg) {
		if m.Header.Get("Sb-Hello") != "" {
			return
		}
		last.Store(m.Subject)
		seen.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Unsubscribe()
	spyNC.Flush()
	check := func(s string) error { return subjects.CheckPeer(s, "peer.in") }
	for i, bad := range hostile {
		for _, field := range []string{"ctl", "reply"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := natsio.NewReceiver(ctx, rnc, natsio.Options{CheckPeer: check})
			if err != nil {
				t.Fatal(err)
			}
			hello := nats.NewMsg(r.Subject())
			hello.Header.Set("Sb-Hello", "1")
			hello.Header.Set("Sb-Ctl", "peer.in.ctl")
			hello.Reply = "peer.in.reply"
			if field == "ctl" {
				hello.Header.Set("Sb-Ctl", bad)
			} else {
				hello.Reply = bad
			}
			if len(hello.Reply) > subjects.MaxSubjectLen || strings.ContainsAny(hello.Reply, "*>") || hello.Reply == "" {
				// The client library will not publish such a reply
				// itself; the header field covers these.
				cancel()
				r.Close()
				continue
			}
			if err := snc.PublishMsg(hello); err != nil {
				t.Fatalf("%d %s: publish: %v", i, field, err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, natsio.ErrForeignSubject) {
				t.Errorf("hostile %s %.40q: Read err = %v, want ErrForeignSubject", field, bad, err)
			}
			if r.Connected() {
				t.Errorf("hostile %s %.40q: receiver connected", field, bad)
			}
			r.Close()
			cancel()
		}
		if _, err := natsio.NewSender(context.Background(), snc, bad, natsio.Options{CheckPeer: check}); !errors.Is(err, natsio.ErrForeignSubject) {
			t.Errorf("NewSender(%.40q) = %v, want ErrForeignSubject", bad, err)
		}
	}
	if err := snc.Flush(); err != nil {
		t.Fatal(err)
	}
	if !snc.IsConnected() || !rnc.IsConnected() {
		t.Fatal("a connection was lost")
	}
	if err := rnc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := spyNC.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("%d messages published after hostile hellos (last on %q)", n, last.Load())
	}
}
