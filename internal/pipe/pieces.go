package pipe

import (
	"errors"
	"fmt"
	"io"
)

// pieces is a source that hands its body out piece by piece as it
// arrived: a stream from another gateway ([natsio.Receiver]), whose pieces
// are the NATS messages' payloads.
type pieces interface {
	io.Reader
	io.WriterTo
	WriteToN(w io.Writer, n int64) (int64, error)
}

// piecesOf returns src as [pieces], if it is one.
func piecesOf(src Source) (pieces, bool) {
	if s, ok := src.(settledSource); ok {
		src = s.Source
	}
	p, ok := src.(pieces)
	return p, ok
}

// writePieces is copyFlush for a body that arrives in pieces: each piece
// goes to out as it is, without the copy through a transfer buffer, and
// out is flushed when no further piece has arrived (one flush per burst).
// A known length is checked as [newExactBody] checks it: the last byte
// goes out only once the end of the body was seen.
func writePieces(out Output, src pieces, length int64) (n int64, readErr, writeErr error) {
	w := &outWriter{out: out}
	var err error
	switch {
	case length < 0:
		n, err = src.WriteTo(w)
	case length > 1:
		n, err = src.WriteToN(w, length-1)
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: the body ended %d bytes short", ErrLength, length-n)
		}
	}
	switch {
	case w.err != nil:
		return n, nil, w.err
	case err != nil:
		return n, err, nil
	case length < 0:
		return n, nil, nil
	}
	// The last byte, if any, with the end.
	var last [1]byte
	k, err := (&exactBody{r: src, left: length - n}).Read(last[:])
	if !errors.Is(err, io.EOF) {
		return n, err, nil
	}
	if k > 0 {
		if _, werr := out.Write(last[:k]); werr != nil {
			return n, nil, werr
		}
		n += int64(k)
	}
	return n, nil, nil
}

// outWriter is an Output as the writer [pieces] write to; it keeps the
// first error of a write or a flush, which is the consumer's side failing.
type outWriter struct {
	out Output
	err error
}

func (w *outWriter) Write(p []byte) (int, error) {
	n, err := w.out.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *outWriter) Flush() error {
	err := w.out.Flush()
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}
