package pipe

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestWritePiecesLength checks the consumer's own length check on a body
// from another gateway written piece by piece: a stream of the announced
// length passes whole, one shorter or longer fails with ErrLength before
// the announced number of bytes reached the response, and one of unknown
// length passes as it is. The sender here checks nothing, as a gateway
// that does not check would.
func TestWritePiecesLength(t *testing.T) {
	nc, opts, ctx := piecesSetup(t)
	body := bytes.Repeat([]byte("0123456789"), 500) // 5 pieces
	for _, c := range []struct {
		name   string
		size   int
		length int64
		ok     bool
	}{
		{"exact", 5000, 5000, true},
		{"shorter", 4999, 5000, false},
		{"longer", 5001, 5000, false},
		{"one piece short", 4000, 5000, false},
		{"one byte", 1, 1, true},
		{"one byte missing", 0, 1, false},
		{"empty", 0, 0, true},
		{"empty, longer", 1, 0, false},
		{"unknown", 5000, -1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, sent := streamed(ctx, t, nc, opts, append(body, 'x')[:c.size])
			out := &recorder{}
			n, readErr, writeErr := writePieces(out, r, c.length)
			if writeErr != nil {
				t.Fatalf("write error %v", writeErr)
			}
			if n != int64(out.buf.Len()) {
				t.Fatalf("reported %d bytes, wrote %d", n, out.buf.Len())
			}
			if c.ok {
				if readErr != nil || !bytes.Equal(out.buf.Bytes(), append(body, 'x')[:c.size]) {
					t.Fatalf("%v, %d bytes", readErr, out.buf.Len())
				}
				if err := <-sent; err != nil {
					t.Fatalf("sender: %v", err)
				}
				return
			}
			if !errors.Is(readErr, ErrLength) {
				t.Fatalf("read error %v, want ErrLength", readErr)
			}
			if int64(out.buf.Len()) >= c.length && c.length > 0 {
				t.Fatalf("%d bytes of %d announced reached the response", out.buf.Len(), c.length)
			}
			_ = r.Close()
			<-sent
		})
	}
}

// TestWritePiecesWriteError checks that a failing response is told apart
// from a failing stream, and that the producer's side learns of it.
func TestWritePiecesWriteError(t *testing.T) {
	nc, opts, ctx := piecesSetup(t)
	r, sent := streamed(ctx, t, nc, opts, make([]byte, 5000))
	boom := errors.New("client gone")
	_, readErr, writeErr := writePieces(failingOutput{boom}, r, 5000)
	if readErr != nil || !errors.Is(writeErr, boom) {
		t.Fatalf("read error %v, write error %v; want the write's", readErr, writeErr)
	}
	_ = r.Close()
	if err := <-sent; err == nil {
		t.Fatal("sender finished although the consumer's side failed")
	}
}

// piecesSetup connects to a fresh nats-server and returns stream options
// of 1,000-byte pieces and a context bounding the test.
func piecesSetup(t *testing.T) (*nats.Conn, natsio.Options, context.Context) {
	t.Helper()
	nc := natstest.Connect(t, natstest.RunServer(t, nil).URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return nc, natsio.Options{ChunkSize: 1000, CheckPeer: func(string) error { return nil }}, ctx
}

// streamed opens a receiver, closed when the test ends, and sends data to
// it from another goroutine; sent gets the sender's result.
func streamed(ctx context.Context, t *testing.T, nc *nats.Conn, opts natsio.Options, data []byte) (r *natsio.Receiver, sent <-chan error) {
	t.Helper()
	r, err := natsio.NewReceiver(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	done := make(chan error, 1)
	go func() {
		s, err := natsio.NewSender(ctx, nc, r.Subject(), opts)
		if err != nil {
			done <- err
			return
		}
		done <- s.WriteAndClose(data)
	}()
	return r, done
}

type failingOutput struct{ err error }

func (failingOutput) Start(Meta)                  {}
func (o failingOutput) Write([]byte) (int, error) { return 0, o.err }
func (o failingOutput) Flush() error              { return o.err }
func (failingOutput) Interrupt()                  {}
func (failingOutput) Resume()                     {}
