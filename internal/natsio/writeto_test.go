package natsio_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/natstest"
)

// pair opens a stream and returns both ends.
func pair(t *testing.T, opts natsio.Options) (*natsio.Receiver, *natsio.Sender) {
	t.Helper()
	snc, rnc := conns(t)
	ctx := context.Background()
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.CloseWithError("test over") })
	return r, s
}

// TestWriteTo moves a stream several windows long through io.Copy, which
// takes the Receiver's WriteTo: the bytes arrive whole and in order, every
// write is at most a chunk, and the clean end is a nil error after which
// the sender's Close returns.
func TestWriteTo(t *testing.T) {
	const chunk, window = 16 << 10, 64 << 10
	r, s := pair(t, natsio.Options{CheckPeer: literal, ChunkSize: chunk, Window: window})
	data := make([]byte, 10*window+77)
	rand.Read(data)
	type result struct {
		n    int64
		err  error
		out  []byte
		most int
	}
	done := make(chan result, 1)
	go func() {
		w := &recorder{}
		n, err := io.Copy(w, r)
		done <- result{n, err, w.buf.Bytes(), w.most}
	}()
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	res := <-done
	if res.err != nil || res.n != int64(len(data)) || !bytes.Equal(res.out, data) {
		t.Fatalf("WriteTo: %d bytes, %v; corrupted: %v", res.n, res.err, !bytes.Equal(res.out, data))
	}
	if res.most > chunk {
		t.Fatalf("a write of %d bytes, more than a chunk", res.most)
	}
}

// recorder is a writer that keeps what it got and logs its writes and
// flushes; while gate is set, a write says so on entered and waits for
// gate.
type recorder struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	most    int
	events  []string
	gate    chan struct{}
	entered chan struct{}
	err     error // returned by every write, if set
}

func (w *recorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		w.entered <- struct{}{}
		<-gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.buf.Write(p)
	w.most = max(w.most, len(p))
	w.events = append(w.events, fmt.Sprintf("w%d", len(p)))
	return len(p), nil
}

func (w *recorder) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.events, " ")
}

// flushRecorder is a recorder that WriteTo flushes.
type flushRecorder struct {
	recorder
	flushed chan struct{}
}

func (w *flushRecorder) Flush() error {
	w.mu.Lock()
	w.events = append(w.events, "f")
	w.mu.Unlock()
	w.flushed <- struct{}{}
	return nil
}

// TestWriteToFlushes proves WriteTo flushes a Flusher after a piece only
// when nothing further has arrived: a lone piece is flushed at once (a
// stream reaches the reader as it is produced), a piece with another one
// behind it is not, nor a last piece whose end has arrived.
func TestWriteToFlushes(t *testing.T) {
	r, s := pair(t, natsio.Options{CheckPeer: literal})
	w := &flushRecorder{flushed: make(chan struct{}, 8)}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.WriteTo(w)
		done <- result{n, err}
	}()
	if _, err := s.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.flushed:
	case <-time.After(10 * time.Second):
		t.Fatalf("a lone piece was not flushed: %s", w.log())
	}
	// The next piece's write waits until the one behind it and the end
	// have arrived.
	gate := make(chan struct{})
	w.mu.Lock()
	w.gate, w.entered = gate, make(chan struct{}, 1)
	w.mu.Unlock()
	if _, err := s.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("the second piece was not written: %s", w.log())
	}
	if _, err := s.Write([]byte("third!!")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n, eof := r.Arrived(); n != 1 || !eof {
			return fmt.Errorf("arrived: %d pieces, end %v", n, eof)
		}
		return nil
	})
	w.mu.Lock()
	w.gate = nil
	w.mu.Unlock()
	close(gate)
	res := <-done
	if res.err != nil || res.n != 3+6+7 {
		t.Fatalf("WriteTo: %d, %v", res.n, res.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if got, want := w.log(), "w3 f w6 w7"; got != want {
		t.Fatalf("writes and flushes %q, want %q", got, want)
	}
	if w.buf.String() != "onesecondthird!!" {
		t.Fatalf("got %q", w.buf.String())
	}
}

// TestWriteToN writes a bounded part of a stream, ending inside a piece:
// the rest stays for Read, and a bound past the stream's end gives
// io.EOF with what there was, as io.CopyN does.
func TestWriteToN(t *testing.T) {
	r, s := pair(t, natsio.Options{CheckPeer: literal})
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write([]byte("abcdef"))
		if err == nil {
			_, err = s.Write([]byte("ghij"))
		}
		if err == nil {
			err = s.Close()
		}
		errc <- err
	}()
	var w bytes.Buffer
	if n, err := r.WriteToN(&w, 8); n != 8 || err != nil || w.String() != "abcdefgh" {
		t.Fatalf("WriteToN(8): %d %v %q", n, err, w.String())
	}
	w.Reset()
	if n, err := r.WriteToN(&w, 100); n != 2 || err != io.EOF || w.String() != "ij" {
		t.Fatalf("WriteToN(100): %d %v %q", n, err, w.String())
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestWriteToErrors: a failing writer's error comes back as it is, and
// the stream's own error (the sender's) as Read returns it.
func TestWriteToErrors(t *testing.T) {
	t.Run("writer", func(t *testing.T) {
		r, s := pair(t, natsio.Options{CheckPeer: literal})
		boom := errors.New("boom")
		go s.Write([]byte("x"))
		if _, err := r.WriteTo(&recorder{err: boom}); err != boom {
			t.Fatalf("err = %v, want the writer's", err)
		}
	})
	t.Run("stream", func(t *testing.T) {
		r, s := pair(t, natsio.Options{CheckPeer: literal})
		go func() {
			s.Write([]byte("x"))
			s.CloseWithError("upstream broke")
		}()
		var w recorder
		_, err := r.WriteTo(&w)
		var re *natsio.RemoteError
		if !errors.As(err, &re) || re.Reason != "upstream broke" {
			t.Fatalf("err = %v, want the sender's", err)
		}
	})
}

// TestWriteAndClose ends a stream with its last chunk: the bytes arrive
// whole, WriteAndClose returns once the receiver read them, and the
// receiver knows the last piece as it arrives, so WriteTo flushes after
// none of it when it came in one message, and not after the last chunk
// when it took several (credit waits included).
func TestWriteAndClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts natsio.Options
		data string
	}{
		{"one message", natsio.Options{CheckPeer: literal}, "abc"},
		{"chunks", natsio.Options{CheckPeer: literal, ChunkSize: 4, Window: 8}, "0123456789abcdefghij"},
		{"empty", natsio.Options{CheckPeer: literal}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s := pair(t, tc.opts)
			w := &flushRecorder{flushed: make(chan struct{}, 64)}
			done := make(chan error, 1)
			go func() {
				_, err := r.WriteTo(w)
				done <- err
			}()
			if err := s.WriteAndClose([]byte(tc.data)); err != nil {
				t.Fatalf("WriteAndClose: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if w.buf.String() != tc.data {
				t.Fatalf("got %q, want %q", w.buf.String(), tc.data)
			}
			log := w.log()
			if strings.HasSuffix(log, "f") {
				t.Fatalf("flushed after the last piece: %q", log)
			}
			if tc.name == "one message" && log != "w3" {
				t.Fatalf("writes and flushes %q, want %q", log, "w3")
			}
			if _, err := s.Write([]byte("x")); !errors.Is(err, natsio.ErrClosed) {
				t.Fatalf("Write after WriteAndClose: %v, want ErrClosed", err)
			}
		})
	}
}

// TestWriteAndCloseFails: a WriteAndClose that fails before its end is
// sent (here: the sender's context ends while the receiver, which reads
// nothing, grants no more credit) ends the stream with an error and
// releases the sender, whose heartbeat and control subscription would
// run on otherwise; the receiver sees a failed stream, not a clean end.
func TestWriteAndCloseFails(t *testing.T) {
	opts := natsio.Options{CheckPeer: literal, ChunkSize: 4, Window: 8}
	for _, size := range []int{40, 4} { // fails in the head, and on the last chunk
		snc, rnc := conns(t)
		r, err := natsio.NewReceiver(context.Background(), rnc, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if size <= opts.Window {
			// Use the credit up first, so the last chunk waits for more.
			if _, err := s.Write(make([]byte, opts.Window)); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- s.WriteAndClose(make([]byte, size)) }()
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("size %d: WriteAndClose without credit returned nil after its context ended", size)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("size %d: WriteAndClose still blocked 10 s after its context ended", size)
		}
		if !s.Released() {
			t.Fatalf("size %d: sender not released after a failed WriteAndClose", size)
		}
		if _, err := io.Copy(io.Discard, r); err == nil {
			t.Fatalf("size %d: the receiver read a clean end of a failed stream", size)
		}
	}
}
