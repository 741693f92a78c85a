package natsio_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/switchboard/switchboard/internal/natsio"
)

// TestTrailer: a trailer handed to CloseWithTrailer reaches the
// receiver after the data, not as data; one larger than a chunk is
// refused and fails the stream.
func TestTrailer(t *testing.T) {
	snc, rnc := conns(t)
	ctx := context.Background()
	opts := natsio.Options{CheckPeer: literal, ChunkSize: 4 << 10}
	r, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); got <- string(b) }()
	s, err := natsio.NewSender(ctx, snc, r.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Trailer() != nil {
		t.Fatal("trailer before EOF")
	}
	s.Write([]byte("body"))
	if err := s.CloseWithTrailer([]byte("Grpc-Status: 0\n")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != "body" {
		t.Fatalf("data %q", b)
	}
	if tr := string(r.Trailer()); tr != "Grpc-Status: 0\n" {
		t.Fatalf("trailer %q", tr)
	}

	r2, err := natsio.NewReceiver(ctx, rnc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	s2, err := natsio.NewSender(ctx, snc, r2.Subject(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.CloseWithTrailer(make([]byte, 5<<10)); !errors.Is(err, natsio.ErrTrailerTooLarge) {
		t.Fatalf("oversized trailer: %v", err)
	}
	var re *natsio.RemoteError
	if _, err := io.ReadAll(r2); !errors.As(err, &re) {
		t.Fatalf("receiver of an oversized trailer: %v", err)
	}
}
