package httpx

import (
	"errors"
	"io"
	"sync"
)

// Buffers is a pool of byte slices of one size, for copy loops that move
// bodies of any size without allocating per request.
type Buffers struct {
	pool sync.Pool
}

// NewBuffers returns a pool of size-byte slices.
func NewBuffers(size int) *Buffers {
	b := &Buffers{}
	b.pool.New = func() any { s := make([]byte, size); return &s }
	return b
}

// Get returns a buffer; give it back with Put.
func (b *Buffers) Get() *[]byte { return b.pool.Get().(*[]byte) }

// Put returns a buffer got from Get.
func (b *Buffers) Put(p *[]byte) { b.pool.Put(p) }

// CopyFlush copies src to w through buf until src ends, calling flush (if
// not nil) after every write so a stream (SSE, a pipe) reaches the client
// chunk by chunk. Bytes that come with src's clean end are not flushed
// on their own: the caller ends the response right after, which sends
// them with the end (one write instead of two). It tells the two ends'
// failures apart: readErr is src's error (io.EOF is a clean end,
// reported as nil), writeErr w's or flush's.
func CopyFlush(w io.Writer, flush func() error, src io.Reader, buf []byte) (n int64, readErr, writeErr error) {
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, nil, werr
			}
			n += int64(k)
			if flush != nil && !errors.Is(err, io.EOF) {
				if werr := flush(); werr != nil {
					return n, nil, werr
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}
