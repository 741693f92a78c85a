package pipe

import (
	"errors"
	"fmt"
	"io"
)

// exactBody passes on exactly the n bytes a body announced, then io.EOF;
// a body that ends early or holds more fails with [ErrLength]. It holds
// the last byte back until it has seen the end of r, so whoever stops at
// the first error never gets all n bytes of a longer body: a consumer
// told Content-Length n never sees a response that looks complete.
type exactBody struct {
	r    io.Reader
	left int64 // bytes still to pass on
	done bool  // r's end was seen and passed on
}

// newExactBody returns r checked against the length n; n < 0 (unknown)
// returns r itself.
func newExactBody(r io.Reader, n int64) io.Reader {
	if n < 0 {
		return r
	}
	return &exactBody{r: r, left: n}
}

func (b *exactBody) Read(p []byte) (int, error) {
	switch {
	case b.done:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	case b.left <= 1:
		return b.readEnd(p)
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.left-1)])
	b.left -= int64(n)
	if errors.Is(err, io.EOF) {
		return n, fmt.Errorf("%w: the body ended %d bytes short", ErrLength, b.left)
	}
	return n, err
}

// readEnd reads the last byte, if one is left, and the end of r; it
// passes the byte on only together with the end.
func (b *exactBody) readEnd(p []byte) (int, error) {
	var buf [2]byte
	k := 0
	for {
		n, err := b.r.Read(buf[k:])
		k += n
		switch {
		case int64(k) > b.left:
			return 0, fmt.Errorf("%w: the body is longer", ErrLength)
		case errors.Is(err, io.EOF) && int64(k) < b.left:
			return 0, fmt.Errorf("%w: the body ended 1 byte short", ErrLength)
		case errors.Is(err, io.EOF):
			b.done, b.left = true, 0
			return copy(p, buf[:k]), io.EOF
		case err != nil:
			return 0, err
		}
	}
}
