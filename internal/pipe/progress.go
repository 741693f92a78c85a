package pipe

import (
	"fmt"
	"io"

	"github.com/switchboard/switchboard/internal/httpx"
)

// progress writes a producer's feedback (?progress=1) as text lines. The
// lines are piping-server's where it has one:
//
//	[INFO] Waiting for 3 receiver(s)...
//	[INFO] Receiver 1 of 3 connected.          (n > 1 only)
//	[INFO] 3 receiver(s) has/have been connected.
//	[INFO] Start sending to 3 receiver(s)!
//	[INFO] Sent 1048576 bytes to 3 receiver(s).
//	[INFO] All receiver(s) was/were received successfully.
//
// A pub/sub producer writes only the last four, or "[INFO] No receiver
// waits: the body was dropped." A failure once the first line was sent
// is the last line, "[ERROR] <reason>", and the response is cut (see
// http.go). A nil progress writes nothing.
type progress func(line string)

func (p progress) line(s string) {
	if p != nil {
		p(s)
	}
}

func (p progress) waiting(n int) {
	p.line(fmt.Sprintf("[INFO] Waiting for %d receiver(s)...\n", n))
}

func (p progress) joined(k, n int) {
	p.line(fmt.Sprintf("[INFO] Receiver %d of %d connected.\n", k, n))
}

func (p progress) connected(n int) {
	p.line(fmt.Sprintf("[INFO] %d receiver(s) has/have been connected.\n", n))
	p.line(fmt.Sprintf("[INFO] Start sending to %d receiver(s)!\n", n))
}

func (p progress) sent(bytes int64, n int) {
	p.line(fmt.Sprintf("[INFO] Sent %d bytes to %d receiver(s).\n", bytes, n))
	p.line("[INFO] All receiver(s) was/were received successfully.\n")
}

// progressError is the last line of a failed producer's feedback.
func progressError(err error) string {
	return fmt.Sprintf("[ERROR] %s\n", httpx.OneLine(httpError(err).Message))
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}
