package pipe

import (
	"fmt"
	"io"

	"github.com/switchboard/switchboard/internal/httpx"
)

// progress writes a producer's feedback (?progress=1) as text lines,
// piping-server's lines where it has one (its 1.12.9 wording, so scripts
// that read them keep working), plus the byte count:
//
//	[INFO] Waiting for 3 receiver(s)...
//	[INFO] 1 receiver(s) has/have been connected.   (receivers that waited before the producer came)
//	[INFO] A receiver was connected.                (one per receiver that came later)
//	[INFO] Start sending to 3 receiver(s)!
//	[INFO] Sent 1048576 bytes.
//	[INFO] Sent successfully!
//	[INFO] All receiver(s) was/were received successfully.
//
// A pub/sub producer writes from "Start sending" on, or "[INFO] No
// receiver waits: the body was dropped." A failure once the first line
// was sent is the last line, "[ERROR] <reason>", and the response is cut
// (see http.go). A nil progress writes nothing.
type progress func(line string)

func (p progress) line(s string) {
	if p != nil {
		p(s)
	}
}

func (p progress) waiting(n int) {
	p.line(fmt.Sprintf("[INFO] Waiting for %d receiver(s)...\n", n))
}

// arrived reports the k receivers that were waiting when the producer
// came.
func (p progress) arrived(k int) {
	if k > 0 {
		p.line(fmt.Sprintf("[INFO] %d receiver(s) has/have been connected.\n", k))
	}
}

func (p progress) joined() { p.line("[INFO] A receiver was connected.\n") }

func (p progress) start(n int) {
	p.line(fmt.Sprintf("[INFO] Start sending to %d receiver(s)!\n", n))
}

func (p progress) sent(bytes int64) {
	p.line(fmt.Sprintf("[INFO] Sent %d bytes.\n", bytes))
	p.line("[INFO] Sent successfully!\n")
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
