package middleman

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/netpoll"
)

// The middleman speaks RFC 6455 itself, server side only, without
// extensions: an idle connection must be able to wait for its next frame
// with no goroutine (see [wsConn.Park]), which a library whose reader
// blocks on the connection cannot do.

// Frame opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes the connection sends by itself.
const (
	closeProtocolError = 1002
	closeNoStatus      = 1005
)

const (
	// closeHandshakeWait bounds the wait for the client's close frame
	// after ours; the connection is closed then in any case.
	closeHandshakeWait = 5 * time.Second
	// controlWriteTimeout bounds the write of a pong or close frame.
	controlWriteTimeout = 5 * time.Second
	// connReadBuffer is the read buffer of a connection while it reads; a
	// parked connection gives it back to a pool. A frame larger than it is
	// read past it.
	connReadBuffer = 512
	// corkMax is the most bytes of a batch collected before a write.
	corkMax = 64 << 10
)

// errNoMessage is returned by NextReader when only control frames were
// buffered: the caller may park the connection again.
var errNoMessage = errors.New("middleman: no message buffered")

// errWSClosed is returned by writes after the close frame was sent.
var errWSClosed = errors.New("middleman: websocket closed")

// wsError is a protocol violation by the client; the connection is closed
// with code.
type wsError struct {
	code int
	msg  string
}

func (e *wsError) Error() string { return fmt.Sprintf("websocket: %s (close %d)", e.msg, e.code) }

// peerClosed is the client's close frame.
type peerClosed struct{ code int }

func (e *peerClosed) Error() string {
	return fmt.Sprintf("websocket: closed by the client (%d)", e.code)
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connReadBuffer) }}

// wsConn is one upgraded connection. One goroutine at a time reads (the
// session's read path); writes of any goroutine are serialised.
type wsConn struct {
	conn  net.Conn
	poll  *netpoll.Handle // nil: the connection cannot park
	br    *bufio.Reader   // nil while parked
	limit int64
	msg   msgReader

	wmu       sync.Mutex
	closeSent bool // guarded by wmu

	pong      chan struct{}
	readDone  chan struct{} // closed when reading failed or the client closed
	readOnce  sync.Once
	closeOnce sync.Once
}

var _ Conn = (*wsConn)(nil)

// newWSConn wraps an upgraded connection; with poller non-nil and a plain
// socket underneath it can park.
func newWSConn(conn net.Conn, poller *netpoll.Poller) *wsConn {
	c := &wsConn{conn: conn, limit: handshakeLimit, pong: make(chan struct{}, 1), readDone: make(chan struct{})}
	if poller != nil {
		sock := conn
		if pc, ok := conn.(*prefixConn); ok {
			sock = pc.Conn
		}
		if h, err := poller.Register(sock); err == nil {
			c.poll = h
		}
	}
	return c
}

// reader is the read buffer, from the pool after a park.
func (c *wsConn) reader() *bufio.Reader {
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c.conn)
	}
	return c.br
}

// parkAfterIdle is how long a read path waits on its goroutine for the
// next frame before it parks: a connection that keeps sending (a
// requester awaiting answers, a service replying) costs no epoll_ctl and
// no new goroutine per message, and one that went quiet parks after it.
const parkAfterIdle = 5 * time.Millisecond

// Park hands the read buffer back and arms the poller: resume runs on a
// new goroutine once the client sent something or went away. It returns
// false, and the caller reads on, when bytes are buffered already, arrive
// within parkAfterIdle, or the connection cannot park.
func (c *wsConn) Park(resume func()) bool {
	if c.poll == nil || (c.br != nil && c.br.Buffered() > 0) {
		return false
	}
	if pc, ok := c.conn.(*prefixConn); ok && len(pc.early) > 0 {
		return false
	}
	if c.br != nil && c.awaitFrame() {
		return false
	}
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	return c.poll.Arm(resume) == nil
}

// awaitFrame waits up to parkAfterIdle for the client's next bytes. It
// reports whether there is something to read: bytes, or a failure the
// next read returns (a closed or reset connection).
func (c *wsConn) awaitFrame() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(parkAfterIdle))
	_, err := c.br.Peek(1)
	_ = c.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

func (c *wsConn) readHeader() (frameHeader, error) {
	br := c.reader()
	var h frameHeader
	var b [8]byte
	if _, err := io.ReadFull(br, b[:2]); err != nil {
		return h, err
	}
	h.fin, h.op = b[0]&0x80 != 0, b[0]&0x0f
	masked, n := b[1]&0x80 != 0, int64(b[1]&0x7f)
	switch {
	case b[0]&0x70 != 0:
		return h, c.violation(closeProtocolError, "reserved bits set")
	case !masked:
		return h, c.violation(closeProtocolError, "unmasked client frame")
	}
	switch n {
	case 126:
		if _, err := io.ReadFull(br, b[:2]); err != nil {
			return h, err
		}
		n = int64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(br, b[:8]); err != nil {
			return h, err
		}
		u := binary.BigEndian.Uint64(b[:8])
		if u>>63 != 0 {
			return h, c.violation(closeProtocolError, "frame length")
		}
		n = int64(u)
	}
	h.length = n
	if _, err := io.ReadFull(br, h.mask[:]); err != nil {
		return h, err
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || n > 125 {
			return h, c.violation(closeProtocolError, "bad control frame")
		}
	default:
		return h, c.violation(closeProtocolError, "unknown opcode")
	}
	return h, nil
}

// NextReader reads up to the start of the next data message, answering
// control frames on the way. When only control frames were buffered and
// the connection can park, it returns errNoMessage.
func (c *wsConn) NextReader() (bool, io.Reader, error) {
	for {
		h, err := c.readHeader()
		if err != nil {
			return false, nil, c.readFailed(err)
		}
		if h.op >= opClose {
			if err := c.control(h); err != nil {
				return false, nil, c.readFailed(err)
			}
			if c.poll != nil && c.br.Buffered() == 0 {
				return false, nil, errNoMessage
			}
			continue
		}
		if h.op == opContinuation {
			return false, nil, c.readFailed(c.violation(closeProtocolError, "continuation without a message"))
		}
		c.msg = msgReader{c: c, h: h, left: h.length}
		return h.op == opText, &c.msg, nil
	}
}

// control handles a ping, pong or close frame.
func (c *wsConn) control(h frameHeader) error {
	var buf [125]byte
	p := buf[:h.length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	unmask(p, h.mask, 0)
	switch h.op {
	case opPing:
		return c.writeControl(opPong, p)
	case opPong:
		select {
		case c.pong <- struct{}{}:
		default:
		}
		return nil
	}
	code := closeNoStatus
	if len(p) >= 2 {
		code = int(binary.BigEndian.Uint16(p))
	}
	if len(p) == 1 || (len(p) >= 2 && !validCloseCode(code)) {
		_ = c.sendClose(closeProtocolError, "bad close frame")
	} else if !utf8.Valid(p[min(len(p), 2):]) {
		// RFC 6455 §7.1.6: the reason is UTF-8; one that is not fails
		// the connection like any other invalid text.
		_ = c.sendClose(CloseInvalidData, "invalid close reason")
	} else if code == closeNoStatus {
		_ = c.sendClose(0, "")
	} else {
		_ = c.sendClose(code, "")
	}
	return &peerClosed{code: code}
}

func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < 1000 || code > 1014:
		return false
	}
	return code != 1004 && code != 1005 && code != 1006
}

// violation closes the connection with code (best effort) and is the
// error the read returns.
func (c *wsConn) violation(code int, msg string) error {
	_ = c.sendClose(code, msg)
	return &wsError{code: code, msg: msg}
}

// readFailed records that reading ended (Close then stops waiting for the
// client's close frame) and returns err.
func (c *wsConn) readFailed(err error) error {
	c.readOnce.Do(func() { close(c.readDone) })
	return err
}

// msgReader reads one message's payload across its frames.
type msgReader struct {
	c    *wsConn
	h    frameHeader
	left int64 // of the current frame
	pos  int   // mask offset in the current frame
	read int64 // of the message
}

func (m *msgReader) Read(p []byte) (int, error) {
	c := m.c
	for m.left == 0 {
		if m.h.fin {
			return 0, io.EOF
		}
		h, err := c.readHeader()
		if err != nil {
			return 0, c.readFailed(err)
		}
		if h.op >= opClose {
			if err := c.control(h); err != nil {
				return 0, c.readFailed(err)
			}
			continue
		}
		if h.op != opContinuation {
			return 0, c.readFailed(c.violation(closeProtocolError, "new message inside a fragmented one"))
		}
		m.h, m.left, m.pos = h, h.length, 0
		// Each further fragment counts its smallest header against the
		// limit, so empty fragments cannot keep a message going forever.
		if m.read += minFrameHeader; m.read >= c.limit {
			return 0, c.readFailed(c.violation(CloseTooBig, "message too big"))
		}
	}
	// The limit counts bytes as they are read, so a reader that stops
	// early (the key handshake) decides itself about a longer message.
	if m.read >= c.limit {
		return 0, c.readFailed(c.violation(CloseTooBig, "message too big"))
	}
	p = p[:min(int64(len(p)), m.left, c.limit-m.read)]
	n, err := c.br.Read(p)
	unmask(p[:n], m.h.mask, m.pos)
	m.pos += n
	m.left -= int64(n)
	m.read += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, c.readFailed(err)
	}
	return n, nil
}

// minFrameHeader is the size of the smallest client frame header (two
// bytes and the mask key).
const minFrameHeader = 6

func unmask(p []byte, key [4]byte, pos int) {
	for i := range p {
		p[i] ^= key[(pos+i)&3]
	}
}

// appendFrameHeader appends an unmasked, final server frame header.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// writeControl writes one control frame unless the close frame was sent.
func (c *wsConn) writeControl(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	return c.writeFrameLocked(op, payload)
}

func (c *wsConn) writeFrameLocked(op byte, payload []byte) error {
	var buf [2 + 125]byte
	b := append(appendFrameHeader(buf[:0], op, len(payload)), payload...)
	_ = c.conn.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	_, err := c.conn.Write(b)
	_ = c.conn.SetWriteDeadline(time.Time{})
	return err
}

// sendClose sends the close frame once; code 0 sends it without a status.
func (c *wsConn) sendClose(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	var p []byte
	if code != 0 {
		p = binary.BigEndian.AppendUint16(make([]byte, 0, 125), uint16(code))
		if len(reason) > 123 {
			reason = reason[:123]
		}
		p = append(p, reason...)
	}
	return c.writeFrameLocked(opClose, p)
}

// WriteBatch writes msgs as text frames, collected into as few writes as
// corkMax allows, all within ctx's deadline.
func (c *wsConn) WriteBatch(ctx context.Context, msgs [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errWSClosed
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(d)
		defer func() { _ = c.conn.SetWriteDeadline(time.Time{}) }()
	}
	buf := getBuf()
	defer putBuf(buf)
	for _, m := range msgs {
		var hdr [10]byte
		buf.Write(appendFrameHeader(hdr[:0], opText, len(m)))
		buf.Write(m)
		if buf.Len() >= corkMax {
			if _, err := c.conn.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
	}
	if buf.Len() == 0 {
		return nil
	}
	_, err := c.conn.Write(buf.Bytes())
	return err
}

// Ping sends a ping and waits for a pong; the read path receives it.
func (c *wsConn) Ping(ctx context.Context) error {
	select {
	case <-c.pong: // a stale one
	default:
	}
	if err := c.writeControl(opPing, nil); err != nil {
		return err
	}
	select {
	case <-c.pong:
		return nil
	case <-c.readDone:
		return errWSClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetReadLimit bounds the size of the next messages.
func (c *wsConn) SetReadLimit(n int64) { c.limit = n }

// Close sends the close frame (unless one was sent), waits up to
// closeHandshakeWait for the client's (the read path sees it), then closes
// the connection. A parked read path is woken to notice.
func (c *wsConn) Close(code int, reason string) error {
	c.closeOnce.Do(func() {
		_ = c.sendClose(code, reason)
		t := time.NewTimer(closeHandshakeWait)
		select {
		case <-c.readDone:
		case <-t.C:
		}
		t.Stop()
		c.shut()
	})
	return nil
}

// CloseReading is Close for the read path itself, when nothing else reads
// the connection (a refused key, invalid UTF-8): unless reading already
// ended, it reads and drops what the client sends until its close frame
// or a failure (see drainFrames), within closeHandshakeWait, so the
// connection ends with the close handshake instead of a reset after the
// whole wait.
func (c *wsConn) CloseReading(code int, reason string) error {
	c.closeOnce.Do(func() {
		_ = c.sendClose(code, reason)
		_ = c.conn.SetReadDeadline(time.Now().Add(closeHandshakeWait))
		c.drainFrames()
		c.shut()
	})
	return nil
}

// drainFrames reads and drops frames, whatever their size (the rest of a
// message cut short by the read limit included), answering control
// frames, until the client's close frame or a failure.
func (c *wsConn) drainFrames() {
	if c.msg.left > 0 {
		if _, err := io.CopyN(io.Discard, c.reader(), c.msg.left); err != nil {
			_ = c.readFailed(err)
			return
		}
		c.msg.left = 0
	}
	for !c.readEnded() {
		h, err := c.readHeader()
		if err == nil && h.op >= opClose {
			err = c.control(h)
		} else if err == nil {
			_, err = io.CopyN(io.Discard, c.reader(), h.length)
		}
		if err != nil {
			_ = c.readFailed(err)
			return
		}
	}
}

// readEnded reports whether reading already failed or saw the client's
// close: there is no frame to read any more.
func (c *wsConn) readEnded() bool {
	select {
	case <-c.readDone:
		return true
	default:
		return false
	}
}

// shut closes the connection at the end of the close handshake.
func (c *wsConn) shut() {
	_ = c.conn.Close()
	if c.poll != nil {
		// The closed socket left the epoll set, and Arm fails from now
		// on: a read path that parked before is woken to see the close.
		if resume := c.poll.Disarm(); resume != nil {
			go resume()
		}
	}
}

// acceptWS answers a WebSocket upgrade (RFC 6455 section 4.2) and takes
// the connection over. It answers the client itself when the request is
// not a valid upgrade.
func acceptWS(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	switch {
	case !httpguts.HeaderValuesContainsToken(r.Header.Values("Connection"), "upgrade") || !httpguts.HeaderValuesContainsToken(r.Header.Values("Upgrade"), "websocket"):
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		httpx.WriteError(w, http.StatusUpgradeRequired, "UPGRADE_REQUIRED", "WebSocket protocol violation: Connection and Upgrade headers must ask for websocket")
		return nil, errors.New("middleman: not an upgrade")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		httpx.WriteError(w, http.StatusBadRequest, httpx.CodeBadRequest, "unsupported WebSocket protocol version (only 13 is supported)")
		return nil, errors.New("middleman: websocket version")
	}
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		httpx.WriteError(w, http.StatusBadRequest, httpx.CodeBadRequest, "invalid Sec-WebSocket-Key")
		return nil, errors.New("middleman: websocket key")
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, httpx.CodeInternal, "cannot take the connection over")
		return nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, early: append([]byte(nil), early...)}
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	_ = conn.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	if _, err := io.WriteString(conn, resp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}
