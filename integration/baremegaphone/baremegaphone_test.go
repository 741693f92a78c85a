package baremegaphone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/baremegaphone"
	"github.com/switchboard/switchboard/internal/natstest"
)

func start(t *testing.T) (*baremegaphone.Bare, jetstream.Stream) {
	t.Helper()
	b, err := baremegaphone.Start(baremegaphone.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	js, err := jetstream.New(natstest.Connect(t, b.NATSURL()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), baremegaphone.Stream)
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

func create(t *testing.T, base string) (producer, consumer string) {
	t.Helper()
	resp, err := http.Post(base+"/create", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct{ ChannelID, ProducerAddress, ConsumerAddress string }
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusOK || c.ConsumerAddress == "" || c.ChannelID == "" {
		t.Fatalf("create: %s %+v %v", resp.Status, c, err)
	}
	return c.ProducerAddress, c.ConsumerAddress
}

func write(t *testing.T, url string, id int) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"id":%d}`, id)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("write: %s", resp.Status)
	}
}

// stored is the number of events the stream still holds.
func stored(s jetstream.Stream) func() (uint64, error) {
	return func() (uint64, error) {
		info, err := s.Info(context.Background())
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
}

// TestWriteReadPurge: a write reaches the open read in its envelope, in
// order; every 50 delivered events are purged while the poll is open, and
// the rest when it ends.
func TestWriteReadPurge(t *testing.T) {
	b, s := start(t)
	base := "http://" + b.Addr()
	producer, consumer := create(t, base)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/read/"+consumer, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("read: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	const n = baremegaphone.PurgeEvery + 7
	for i := range n {
		write(t, base+"/write/"+producer+"/s1", i)
		if !lines.Scan() {
			t.Fatalf("event %d: read ended: %v", i, lines.Err())
		}
		var ev struct {
			Sid, Eid string
			Ts       int64
			Body     struct{ ID int }
		}
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("event %d: %q: %v", i, lines.Bytes(), err)
		}
		if ev.Sid != "s1" || ev.Eid == "" || ev.Ts == 0 || ev.Body.ID != i {
			t.Fatalf("event %d: got %q", i, lines.Bytes())
		}
	}
	count := stored(s)
	natstest.Eventually(t, 5*time.Second, func() error {
		if m, err := count(); err != nil || m != n-baremegaphone.PurgeEvery {
			return fmt.Errorf("%d stored with the poll open (%v), want %d", m, err, n-baremegaphone.PurgeEvery)
		}
		return nil
	})
	cancel()
	natstest.Eventually(t, 5*time.Second, func() error {
		if m, err := count(); err != nil || m != 0 {
			return fmt.Errorf("%d stored after the poll (%v), want 0", m, err)
		}
		return nil
	})
}

// TestBetweenPolls: an event written while no poll is open reaches the
// next poll; an unknown channel's read and write are 404 (the write names
// no subject and stores nothing), and an oversized body is refused.
func TestBetweenPolls(t *testing.T) {
	b, s := start(t)
	base := "http://" + b.Addr()
	producer, consumer := create(t, base)
	write(t, base+"/write/"+producer+"/s", 7)
	resp, err := http.Get(base + "/read/" + consumer)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"body":{"id":7}`) {
		t.Fatalf("read %q: %v", line, err)
	}
	resp404, err := http.Get(base + "/read/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp404.Body.Close()
	if resp404.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown channel: %s", resp404.Status)
	}
	before, err := stored(s)()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/write/nope/s", `1`, http.StatusNotFound},
		{"/write/a.b/s", `1`, http.StatusNotFound},
		{"/write/" + producer + "/s", strings.Repeat(" ", 1<<20+1), http.StatusBadRequest},
	} {
		r, err := http.Post(base+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != c.want {
			t.Fatalf("POST %s: %s, want %d", c.path, r.Status, c.want)
		}
	}
	if after, err := stored(s)(); err != nil || after != before {
		t.Fatalf("stored %d events after refused writes, %d before (%v)", after, before, err)
	}
}
