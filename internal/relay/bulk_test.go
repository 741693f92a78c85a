package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestBulkConnReadFromStopsAtLimit writes a streamed body through
// bulkConn.ReadFrom under a limit, as http.Transport does for a body of
// known length: exactly the first limit bytes reach the connection, in
// order, and the rest stays readable from the body; other readers are
// copied as before.
func TestBulkConnReadFromStopsAtLimit(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	snc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer snc.Close()
	rnc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	check := func(s string) error { return subjects.CheckPeer(s, "") }
	opts := natsio.Options{CheckPeer: check, ChunkSize: 8 << 10, Window: 32 << 10}
	ctx := context.Background()
	rcv, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	data := make([]byte, 100<<10+3)
	rand.Read(data)
	sent := make(chan error, 1)
	go func() {
		s, err := natsio.NewSender(ctx, snc, rcv.Subject(), opts)
		if err == nil {
			_, err = s.Write(data)
		}
		if err == nil {
			err = s.Close()
		}
		sent <- err
	}()

	a, b := net.Pipe()
	got := make(chan []byte, 1)
	go func() { out, _ := io.ReadAll(b); got <- out }()
	conn := &bulkConn{Conn: a}
	body := &streamedBody{r: rcv}
	const limit = 50<<10 + 1 // not on a chunk boundary
	n, err := conn.ReadFrom(io.LimitReader(body, limit))
	if err != nil || n != limit {
		t.Fatalf("ReadFrom: %d, %v", n, err)
	}
	rest, err := io.ReadAll(body)
	if err != nil || !bytes.Equal(rest, data[limit:]) {
		t.Fatalf("rest of the body: %d bytes, %v", len(rest), err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n, err := conn.ReadFrom(bytes.NewReader([]byte("tail"))); err != nil || n != 4 {
		t.Fatalf("plain reader: %d, %v", n, err)
	}
	a.Close()
	if out := <-got; !bytes.Equal(out, append(append([]byte{}, data[:limit]...), "tail"...)) {
		t.Fatalf("connection got %d bytes, want the first %d and the tail", len(out), limit)
	}
}
