package middleman

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// byteConn is a client connection whose bytes are fixed: reads come from
// in, writes (pongs, close frames) are collected.
type byteConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *byteConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *byteConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *byteConn) Close() error                     { return nil }
func (c *byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *byteConn) SetDeadline(time.Time) error      { return nil }
func (c *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *byteConn) SetWriteDeadline(time.Time) error { return nil }

// clientFrame is one masked client frame, as a browser sends it.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

// FuzzWSFrames: whatever bytes a client sends after the upgrade, the
// server's frame reader never panics, never hands out more of a message
// than the read limit, never answers with an oversized control frame, and
// ends on an error rather than looping.
func FuzzWSFrames(f *testing.F) {
	f.Add(clientFrame(true, opText, []byte("SUB news")))
	f.Add(append(clientFrame(false, opText, []byte("PUB a ")), append(clientFrame(true, opPing, []byte("p")), clientFrame(true, opContinuation, []byte("hello"))...)...))
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8}))
	f.Add(clientFrame(true, opBinary, bytes.Repeat([]byte("x"), 300)))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})                        // unmasked
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // 2^64-1 length
	f.Add([]byte{0x89, 0xfe, 0x00, 0x80, 1, 2, 3, 4})                         // 128-byte ping
	const limit = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		bc := &byteConn{in: bytes.NewReader(data)}
		c := newWSConn(bc, nil)
		c.SetReadLimit(limit)
		// Every message takes at least one frame header (2 bytes) of the
		// input, so a reader that is not stuck ends within len(data) steps.
		for range len(data) + 1 {
			_, r, err := c.NextReader()
			if err != nil {
				if errors.Is(err, errNoMessage) {
					t.Fatal("a connection that cannot park returned errNoMessage")
				}
				break
			}
			n, err := io.Copy(io.Discard, r)
			if n > limit {
				t.Fatalf("message of %d bytes read past the limit of %d", n, limit)
			}
			if err != nil {
				break
			}
		}
		// Every frame the server wrote is a well-formed, unmasked control
		// frame of at most 125 bytes.
		out := bc.out.Bytes()
		for len(out) > 0 {
			if len(out) < 2 || out[0]&0x80 == 0 || out[0]&0x0f < opClose || out[1]&0x80 != 0 || out[1]&0x7f > 125 {
				t.Fatalf("server wrote a bad control frame: % x", out[:min(len(out), 16)])
			}
			n := 2 + int(out[1]&0x7f)
			if n > len(out) {
				t.Fatalf("server wrote a truncated frame: % x", out)
			}
			out = out[n:]
		}
	})
}
