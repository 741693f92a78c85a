package middleman

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/natstest"
)

// TestTrustAcrossInstances: an enablement made through one gateway's Trust
// is visible to another's at once through the bucket read, and through its
// watcher without any read; revoking (deleting the KV key) is seen too.
func TestTrustAcrossInstances(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	open := func() (*Trust, jetstream.KeyValue) {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tr, err := OpenTrust(ctx, js, 1, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		return tr, tr.kv
	}
	a, kv := open()
	b, _ := open()
	ctx := context.Background()
	for _, key := range []string{"x", "a.>", "*", "with space"} {
		if ok, err := b.Enabled(ctx, CmdEPUB, key, true); ok || err != nil {
			t.Fatalf("%q enabled before EPUB: %v %v", key, ok, err)
		}
		if err := a.Enable(ctx, CmdEPUB, key); err != nil {
			t.Fatal(err)
		}
		if ok, _ := b.Enabled(ctx, CmdESUB, key, true); ok {
			t.Fatalf("EPUB %q enabled ESUB", key)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if ok, _ := b.Enabled(ctx, CmdEPUB, "a.>", false); !ok {
			return errors.New("watcher has not delivered the enablement")
		}
		return nil
	})
	if ok, _ := b.Enabled(ctx, CmdEPUB, "a", true); ok {
		t.Fatal("EPUB a.> enabled a")
	}
	if err := kv.Delete(ctx, "EPUB.x"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if ok, _ := b.Enabled(ctx, CmdEPUB, "x", false); ok {
			return errors.New("revocation not seen")
		}
		return nil
	})
}
