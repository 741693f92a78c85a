package natsio_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// literal accepts any literal, bounded subject: both test connections use
// the default inbox.
func literal(s string) error { return subjects.CheckPeer(s, "") }

// conns returns two connections to one real server: the sender's and the
// receiver's, as on two gateways.
func conns(t testing.TB) (*nats.Conn, *nats.Conn) {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	a, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestRoundTripLarge(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	data := make([]byte, 48<<20+123)
	rand.Read(data)
	r, err := natsio.NewReceiver(ctx, rnc, natsio.Options{CheckPeer: literal})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, r)
		got <- h.Sum(nil)
	}()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), natsio.Options{CheckPeer: literal})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(s, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("copy: %d %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := sha256.Sum256(data)
	if h := <-got; !bytes.Equal(h, want[:]) {
		t.Fatal("data corrupted")
	}
}

// TestFlowControlBoundsInFlight proves a sender cannot run ahead of a
// reader that does not read: it stops after about one window.
func TestFlowControlBoundsInFlight(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	opts := natsio.Options{CheckPeer: literal, ChunkSize: 16 << 10, Window: 64 << 10}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan int64, 1)
	go func() {
		n, _ := s.Write(make([]byte, 1<<20))
		wrote <- int64(n)
	}()
	select {
	case n := <-wrote:
		t.Fatalf("write of 1 MiB finished (%d bytes) with a 64 KiB window and no reader", n)
	case <-time.After(300 * time.Millisecond):
		// The writer must still be blocked: nothing more to wait for.
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if n := <-wrote; n != 1<<20 {
		t.Fatalf("wrote %d", n)
	}
	// Close waits for the receiver to read up to EOF.
	go io.Copy(io.Discard, r)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestNoReceiver(t *testing.T) {
	snc, _ := conns(t)
	start := time.Now()
	_, err := natsio.NewSender(context.Background(), snc, snc.NewInbox(), natsio.Options{CheckPeer: literal})
	if !errors.Is(err, natsio.ErrNoReceiver) {
		t.Fatalf("err = %v, want ErrNoReceiver", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("no-receiver detection was not fast")
	}
}

func TestSenderErrorReachesReader(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	r, err := natsio.NewReceiver(ctx, rnc, natsio.Options{CheckPeer: literal})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), natsio.Options{CheckPeer: literal})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("partial"))
	s.CloseWithError("upstream broke")
	b, err := io.ReadAll(r)
	var re *natsio.RemoteError
	if !errors.As(err, &re) || re.Reason != "upstream broke" || string(b) != "partial" {
		t.Fatalf("read %q, err %v", b, err)
	}
}

func TestReceiverCancelStopsSender(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	opts := natsio.Options{CheckPeer: literal, ChunkSize: 8 << 10, Window: 32 << 10}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(make([]byte, 10<<20))
		errc <- err
	}()
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, natsio.ErrCanceled) {
			t.Fatalf("write err = %v, want ErrCanceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sender not stopped by receiver close")
	}
	s.CloseWithError("done")
}

// TestCloseAfterLastByte: a receiver that took every byte but stopped
// before reading the end (a consumer whose length check failed on the
// last piece) has not confirmed the stream: its Close tells the sender at
// once, whose Close then fails with ErrCanceled instead of waiting for a
// confirmation until the peer timeout.
func TestCloseAfterLastByte(t *testing.T) {
	snc, rnc := conns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A peer timeout far beyond the test's own bound.
	opts := natsio.Options{CheckPeer: literal, ChunkSize: 1000, PeerTimeout: time.Hour}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
		if err == nil {
			err = s.WriteAndClose(make([]byte, 5000))
		}
		sent <- err
	}()
	// The last piece comes with the end: once it is read, the end is here.
	if _, err := io.ReadFull(r, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	select {
	case err := <-sent:
		if !errors.Is(err, natsio.ErrCanceled) {
			t.Fatalf("sender: %v, want ErrCanceled", err)
		}
	case <-ctx.Done():
		t.Fatal("sender still waits for a confirmation the receiver will not give")
	}
}

// TestPeerLost proves each side notices the other vanishing without a
// goodbye (its NATS connection dies) within PeerTimeout.
func TestPeerLost(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	opts := natsio.Options{CheckPeer: literal, Heartbeat: 50 * time.Millisecond, PeerTimeout: 400 * time.Millisecond}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("x"))
	snc.Close()
	buf := make([]byte, 10)
	n, _ := r.Read(buf)
	if n != 1 {
		t.Fatalf("first read %d", n)
	}
	start := time.Now()
	if _, err := r.Read(buf); !errors.Is(err, natsio.ErrPeerLost) {
		t.Fatalf("read err = %v, want ErrPeerLost", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("peer loss noticed after %s", d)
	}
	s.CloseWithError("gone")
}

func TestContextCancelEndsRead(t *testing.T) {
	_, rnc := conns(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := natsio.NewReceiver(ctx, rnc, natsio.Options{CheckPeer: literal})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel()
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkStream measures stream throughput between two connections of
// one server next to raw core NATS publishes of the same chunks (no flow
// control, no ordering guarantee), in the same run.
func BenchmarkStream(b *testing.B) {
	snc, rnc := conns(b)
	chunk := make([]byte, 256<<10)
	b.Run("natsio", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		ctx := context.Background()
		r, _ := natsio.NewReceiver(ctx, rnc, natsio.Options{CheckPeer: literal})
		defer r.Close()
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, r); close(done) }()
		s, err := natsio.NewSender(ctx, snc, r.Subject(), natsio.Options{CheckPeer: literal})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
		<-done
	})
	b.Run("raw-nats", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		subj := rnc.NewInbox()
		got := make(chan struct{}, 1)
		n := 0
		sub, _ := rnc.Subscribe(subj, func(*nats.Msg) {
			n++
			if n == b.N {
				got <- struct{}{}
			}
		})
		sub.SetPendingLimits(-1, -1)
		rnc.Flush()
		defer sub.Unsubscribe()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			snc.Publish(subj, chunk)
		}
		<-got
	})
}

// TestInboxPrefix proves both sides subscribe where Inbox says when set,
// so permissions can confine a stream to one subject space.
func TestInboxPrefix(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	opts := natsio.Options{CheckPeer: literal, Inbox: func() string { return "sb.test.in." + nats.NewInbox()[len(nats.InboxPrefix):] }}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(r.Subject(), "sb.test.in.") || strings.Count(r.Subject(), ".") != 3 {
		t.Fatalf("receiver subject %q", r.Subject())
	}
	ctl := make(chan string, 4)
	spy, _ := rnc.Subscribe("sb.test.in.*", func(m *nats.Msg) {
		if m.Header.Get("Sb-Credit") != "" || m.Header.Get("Sb-Done") != "" {
			select {
			case ctl <- m.Subject:
			default:
			}
		}
	})
	defer spy.Unsubscribe()
	rnc.Flush()
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); got <- string(b) }()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != "hello" {
		t.Fatalf("got %q", b)
	}
	select {
	case subj := <-ctl:
		if subj == r.Subject() {
			t.Fatalf("credit sent to the data subject")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no control message seen under the prefix")
	}
}

// TestWriteToNMixedWithRead reads a stream partly with Read and partly
// with WriteToN: the bytes arrive whole and in order, credit keeps flowing
// (the data is several windows long), and the end is io.EOF after which
// the sender's Close returns.
func TestWriteToNMixedWithRead(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	const chunk, window = 16 << 10, 64 << 10
	opts := natsio.Options{CheckPeer: literal, ChunkSize: chunk, Window: window}
	data := make([]byte, 10*window+77)
	rand.Read(data)
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan []byte, 1)
	errc := make(chan error, 1)
	go func() {
		var out bytes.Buffer
		small := make([]byte, 1000)
		for i := 0; ; i++ {
			var err error
			switch i % 3 {
			case 0:
				var n int
				n, err = r.Read(small)
				out.Write(small[:n])
			case 1:
				_, err = r.WriteToN(&out, 777)
			default:
				_, err = r.WriteToN(&out, chunk+1)
			}
			if err == io.EOF {
				got <- out.Bytes()
				return
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case out := <-got:
		if !bytes.Equal(out, data) {
			t.Fatalf("got %d bytes, want %d, or corrupted", len(out), len(data))
		}
	case err := <-errc:
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end: %d bytes, %v", n, err)
	}
}
