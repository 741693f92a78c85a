package relay

import "io"

// streamWriter is the writer a stream received from NATS is written to
// ([natsio.Receiver.WriteTo]): it tells a failure of its writer (err)
// from the stream's own, and reports each piece it wrote to wrote.
type streamWriter struct {
	w     io.Writer
	wrote func(n int) // nil: nothing to report
	err   error
}

func (s *streamWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if s.wrote != nil {
		s.wrote(n)
	}
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// flushWriter is a streamWriter that WriteTo flushes (a [natsio.Flusher])
// when no further piece has arrived.
type flushWriter struct {
	streamWriter
	flush func() error
}

func (f *flushWriter) Flush() error {
	err := f.flush()
	if err != nil && f.err == nil {
		f.err = err
	}
	return err
}
