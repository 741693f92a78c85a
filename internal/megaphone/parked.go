package megaphone

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/netpoll"
	"github.com/switchboard/switchboard/internal/protocol"
)

// A poll over HTTP/1.1 spends nearly all its life waiting. Served the
// usual way it holds net/http's whole per-connection machinery for that
// time: the handler goroutine (its stack grown by opening the poll), the
// background-read goroutine, 4 KiB + 4 KiB of bufio buffers and the parsed
// request. A parked poll gives all of that back: the handler takes the
// connection over (http.Hijacker), writes the response head and chunks
// itself, and returns. What is left is this struct, a runtime timer for
// the deadline and its place in the api's set of parked polls (which
// shutdown ends); the socket waits in the gateway's epoll set ([netpoll]) to
// see the client go away or send bytes, with no goroutine of its own
// (where it cannot, e.g. TLS, one goroutine blocked in a 1-byte read does
// that). Events are delivered by a short-lived goroutine started by the
// wake-up dispatcher. When the poll ends, a connection in the epoll set
// goes back to net/http (protocol.Deps.ServeAgain), which reads the
// client's next request on it: keep-alive holds, and a client's re-poll
// costs no new TCP connection. A connection that cannot go back (TLS, a
// client that sent "Connection: close" or sent bytes during the poll, no
// ServeAgain) is closed instead, and its head says "Connection: close".
type parked struct {
	p    *Poll
	conn net.Conn
	// ctx is the tracked stream's own context (shutdown ends it); the
	// poll adds no context of its own: ending says deliveries stop.
	ctx     context.Context
	ending  atomic.Bool
	sse     bool
	log     *slog.Logger
	release func() // ends the tracked stream

	// state is 0 (idle), 1 (a delivery runs) or 2 (a delivery runs and
	// another wake-up came in meanwhile).
	state atomic.Int32
	// run is deliver as a func value, made by the first kick: a go
	// statement on it allocates nothing per wake-up. Only a kick that
	// moved state from 0 touches it, so the state's atomics order it.
	run func()

	mu     sync.Mutex // held by a delivery; finish takes it to end them
	closed bool

	timer *time.Timer
	// set holds the poll until it ends; prev and next link it there.
	set        *parkedSet
	prev, next *parked
	watching   bool            // watch or the poller closes the connection
	polled     *netpoll.Handle // nil: watch waits on the connection instead
	ended      atomic.Bool     // finish ran: the poller closes the connection
	once       sync.Once
	closer     sync.Once
	// serveAgain, when set, takes the connection back to net/http after
	// the last chunk (keep-alive; see parked); dirty: the client sent
	// bytes during the poll, which were dropped, so the connection is no
	// longer at a request boundary and is closed instead.
	serveAgain func(net.Conn)
	dirty      atomic.Bool
}

// errPollEnding stops a delivery of a poll that is ending.
var errPollEnding = errors.New("megaphone: poll ending")

// closeWait is how long a parked poll that ended waits for its client to
// close the connection first (the last chunk and "Connection: close" ask
// it to), so that TIME_WAIT stays with the client, not on the gateway.
const closeWait = 2 * time.Second

// park takes over w's connection for poll p and returns true; the caller
// must then return without touching w again. It returns false, leaving w
// untouched, when the connection cannot be taken over (HTTP/2, HTTP/1.0):
// the caller serves the poll the usual way. release is called once the
// parked poll ended.
func (h *api) park(w http.ResponseWriter, r *http.Request, ctx context.Context, p *Poll, sse bool, release func()) bool {
	conn, reusable, ok := hijack(w, r)
	if !ok {
		return false
	}
	h.parkConn(conn, w.Header(), reusable, ctx, p, sse, release)
	return true
}

// hijack takes w's connection over from net/http when the request is
// HTTP/1.1 and the connection allows it. The bufio buffers net/http hands
// over are dropped: anything the client pipelined is ignored, and the
// connection is then not reusable, nor is it when the client asked to
// close it.
func hijack(w http.ResponseWriter, r *http.Request) (conn net.Conn, reusable, ok bool) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return nil, false, false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false, false
	}
	return conn, !r.Close && rw.Reader.Buffered() == 0, true
}

// parkConn serves poll p on conn, taken over from net/http, after
// writing the status line and headers of the chunked 200 (hdr and the
// framing). reusable: the connection may go back to net/http at the end
// (see parked).
func (h *api) parkConn(conn net.Conn, hdr http.Header, reusable bool, ctx context.Context, p *Poll, sse bool, release func()) {
	x := &parked{p: p, conn: conn, ctx: ctx, sse: sse, log: h.log, release: release, set: &h.parked}
	hd, perr := h.poller.Register(conn)
	if perr == nil {
		x.polled = hd
		if reusable {
			x.serveAgain = h.serveAgain
		}
	}
	head := responseHead(hdr, x.serveAgain != nil)
	if sse {
		head = appendChunk(head, []byte("retry: 500\n\n"))
	}
	_ = conn.SetWriteDeadline(p.Deadline().Add(writeSlack))
	x.mu.Lock() // no delivery before the head is out
	defer x.mu.Unlock()
	x.timer = time.AfterFunc(time.Until(p.Deadline()), x.finish)
	if !h.parked.add(x) { // shutdown began
		go x.finish()
	}
	if _, err := conn.Write(head); err != nil {
		go x.finish()
		return
	}
	x.watching = true
	if perr == nil {
		if err := hd.Arm(x.readable); err != nil {
			go x.finish()
			x.closeConn()
			return
		}
	} else {
		go x.watch()
	}
	p.w.notify.Store(x)
	x.kick() // what is buffered now, and any wake-up that came before notify was set
}

// stopped reports whether deliveries must stop: the poll is ending or the
// stream was cancelled (shutdown).
func (x *parked) stopped() bool { return x.ending.Load() || x.ctx.Err() != nil }

// responseHead renders the status line and headers of a chunked 200;
// keepAlive false adds "Connection: close".
func responseHead(hdr http.Header, keepAlive bool) []byte {
	b := []byte("HTTP/1.1 200 OK\r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nTransfer-Encoding: chunked\r\n"...)
	if !keepAlive {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}

// appendChunk appends data as one HTTP/1.1 chunk.
func appendChunk(b, data []byte) []byte {
	b = strconv.AppendUint(b, uint64(len(data)), 16)
	b = append(append(append(b, "\r\n"...), data...), "\r\n"...)
	return b
}

// watch waits for the client to go away, ends the poll and closes the
// connection.
func (x *parked) watch() {
	var b [1]byte
	for {
		if _, err := x.conn.Read(b[:]); err != nil {
			x.finish()
			_ = x.conn.Close()
			return
		}
	}
}

// readable runs when the polled socket has bytes, was shut down by the
// client or failed: bytes (a client may pipeline its next request) are
// dropped, the connection marked dirty and the wait re-armed; anything
// else ends the poll and closes the connection, as does a read after the
// poll ended.
func (x *parked) readable() {
	var b [512]byte
	if _, err := x.conn.Read(b[:]); err == nil && !x.ended.Load() {
		x.dirty.Store(true) // before the re-arm: finish checks it after its disarm
		if x.polled.Arm(x.readable) == nil {
			return
		}
	}
	x.finish()
	x.closeConn()
}

// closeConn closes the connection once and drops a wait still armed on
// it (after the close, so that readable cannot arm one that never fires).
func (x *parked) closeConn() {
	x.closer.Do(func() {
		_ = x.conn.Close()
		if x.polled != nil {
			x.polled.Disarm()
		}
	})
}

// kick makes sure a delivery runs after this call. It never blocks.
func (x *parked) kick() {
	for {
		switch x.state.Load() {
		case 0:
			if x.state.CompareAndSwap(0, 1) {
				if x.run == nil { // only the kick that moved state from 0 gets here
					x.run = x.deliver
				}
				go x.run()
				return
			}
		case 1:
			if x.state.CompareAndSwap(1, 2) {
				return
			}
		default:
			return
		}
	}
}

// deliver drains the buffer to the client, again while wake-ups keep
// coming, and ends the poll when the client is gone or the channel was
// deleted.
func (x *parked) deliver() {
	for {
		x.mu.Lock()
		if x.closed || x.stopped() {
			x.mu.Unlock()
			x.state.Store(0)
			return
		}
		err := x.p.drain(x.ctx, x.emit)
		end := err != nil || x.p.w.gone.Load() || x.stopped()
		x.mu.Unlock()
		if end {
			if err != nil && !x.stopped() {
				x.log.Debug("poll ended early", "err", err)
			}
			x.state.Store(0)
			x.finish()
			return
		}
		if x.state.CompareAndSwap(1, 0) {
			return
		}
		x.state.Store(1) // woken while draining: drain again
	}
}

// emit writes one event as one chunk, in one write. Once the poll is
// ending (the client went away, shutdown, the deadline) it writes nothing:
// an event not written stays buffered for the next poll.
func (x *parked) emit(ev Event) error {
	if x.stopped() {
		return errPollEnding
	}
	b := chunkBufs.Get().(*chunkBuf)
	if x.sse {
		b.frame = append(b.frame[:0], "id: "...)
		b.frame = strconv.AppendUint(b.frame, ev.Cursor, 10)
		b.frame = append(append(append(b.frame, "\ndata: "...), ev.Data...), "\n\n"...)
	} else {
		b.frame = append(append(b.frame[:0], ev.Data...), '\n')
	}
	b.chunk = appendChunk(b.chunk[:0], b.frame)
	_, err := x.conn.Write(b.chunk)
	if cap(b.chunk) <= maxPooledChunk {
		chunkBufs.Put(b)
	}
	return err
}

// chunkBuf is where emit renders an event and its chunk. Parked polls
// share a pool of them instead of each keeping two buffers the size of
// the largest event it delivered.
type chunkBuf struct{ frame, chunk []byte }

var chunkBufs = sync.Pool{New: func() any { return new(chunkBuf) }}

// maxPooledChunk bounds the buffers kept in chunkBufs: a rare large event
// does not stay in the pool.
const maxPooledChunk = 64 << 10

// parkedSet holds the parked polls of a gateway so that shutdown ends
// them with one hook on the shared stop context, instead of each poll
// registering one of its own (a context.AfterFunc is ~150 bytes per
// poll). The polls form a doubly linked list through their prev and
// next fields.
type parkedSet struct {
	mu     sync.Mutex
	head   *parked
	hook   sync.Once
	closed bool // shutdown began: add refuses
}

// add inserts x and returns true, or returns false once shutdown began
// (x.ctx, the tracker's stop context, is done): the caller ends x.
func (s *parkedSet) add(x *parked) bool {
	s.hook.Do(func() { context.AfterFunc(x.ctx, s.endAll) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || x.ctx.Err() != nil {
		return false
	}
	x.next = s.head
	if s.head != nil {
		s.head.prev = x
	}
	s.head = x
	return true
}

// remove takes x out of the set if it is there.
func (s *parkedSet) remove(x *parked) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case x.prev != nil:
		x.prev.next = x.next
	case s.head == x:
		s.head = x.next
	default:
		return // not in the set
	}
	if x.next != nil {
		x.next.prev = x.prev
	}
	x.prev, x.next = nil, nil
}

// endAll ends every parked poll: shutdown began.
func (s *parkedSet) endAll() {
	s.mu.Lock()
	s.closed = true
	var all []*parked
	for x := s.head; x != nil; x = x.next {
		all = append(all, x)
	}
	s.mu.Unlock()
	for _, x := range all {
		go x.finish()
	}
}

// finish ends the poll once: it waits for a delivery under way, releases
// the reader claim and ends the chunked body. watch closes the connection
// when the client does, or closeWait later.
func (x *parked) finish() {
	x.once.Do(func() {
		// A delivery under way stops at its next event; a read of the
		// stream it is waiting for ends within readTimeout (at once on
		// shutdown, which cancels ctx).
		x.ending.Store(true)
		x.mu.Lock()
		x.closed = true
		x.mu.Unlock()
		x.timer.Stop()
		x.set.remove(x)
		x.p.Close()
		// The connection goes back to net/http only if no wait on it was
		// under way (a disarmed wait never fires, so nothing reads the
		// socket from here on) and the client sent nothing meanwhile.
		again := x.serveAgain != nil && x.polled.Disarm() != nil && !x.dirty.Load()
		_ = x.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := x.conn.Write([]byte("0\r\n\r\n"))
		if err != nil && !errors.Is(err, net.ErrClosed) {
			x.log.Debug("end parked poll", "err", err)
		}
		switch {
		case again && err == nil:
			_ = x.conn.SetDeadline(time.Time{})
			x.serveAgain(x.conn)
		case again || !x.watching: // a failed write, or nothing waits on it
			x.closeConn()
		case x.polled != nil:
			// readable closes it when the client does, this timer otherwise.
			x.ended.Store(true)
			time.AfterFunc(closeWait, x.closeConn)
		default: // watch closes it when the client does or at this deadline
			_ = x.conn.SetReadDeadline(time.Now().Add(closeWait))
		}
		x.release()
	})
}

// queued is a poll taken over from net/http while every opening slot was
// taken. Until its turn it is only this struct and its socket.
type queued struct {
	conn     net.Conn
	reusable bool        // see hijack
	hdr      http.Header // the response headers set before the handler (CORS)
	ctx      context.Context
	release  func() // ends the tracked stream
	addr     string
	after    uint64
	arrival  time.Time
	sse      bool
}

// openSlot takes an opening slot if one is free and no taken-over poll
// waits for one (those go first).
func (h *api) openSlot() bool {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	if len(h.waiting) > 0 {
		return false
	}
	select {
	case h.opening <- struct{}{}:
		return true
	default:
		return false
	}
}

// releaseSlot frees an opening slot and gives it to a waiting poll.
func (h *api) releaseSlot() {
	<-h.opening
	h.dispatch()
}

// queuedPolls counts the polls that waited for an opening slot taken
// over from net/http (tests check that the path was taken).
var queuedPolls atomic.Int64

// enqueue makes q wait for an opening slot.
func (h *api) enqueue(q *queued) {
	queuedPolls.Add(1)
	// Shutdown answers every waiting poll at once (q.ctx is the
	// tracker's stop context, the same for every poll).
	h.stopHook.Do(func() { context.AfterFunc(q.ctx, h.refuseWaiting) })
	h.qmu.Lock()
	h.waiting = append(h.waiting, q)
	if len(h.waiting) >= burstQueue && !h.burst {
		h.burst = true
		burstGC.enter()
	}
	h.qmu.Unlock()
	h.dispatch()
}

// burstQueue is how many polls waiting for an opening slot make a burst:
// while one lasts the GC runs at burstGCPercent (see gcDuringBursts).
const burstQueue = 256

// burstGCPercent is the GC's heap growth while a burst of polls opens.
const burstGCPercent = 50

// gcDuringBursts lowers the GC's heap growth (GOGC) while a burst of
// polls opens, process-wide, and restores it when the last burst is over.
// A burst sets the gateway's high-water mark: thousands of polls are
// taken over from net/http, each leaving its buffers and parsed request
// as garbage, while the heap grows to twice what was live at the last GC
// (GOGC 100); an idle gateway runs no GC afterwards to give it back.
// Growing by half of it instead took the RSS per parked poll at 3,000
// opened at once from ~10 to ~8.5 KiB (README), and costs GC work only
// during bursts (everywhere else GOGC 100 is cheaper per event: GOGC 50
// throughout ran the GC 2.7 times as often under the event benchmark). A
// lower GOGC set by the operator (or GOGC=off) is kept.
//
// A wave of openings (releaseAfterOpens polls or more, then none for
// waveQuiet) leaves its garbage to the OS too: debug.FreeOSMemory, at
// most once per releaseEvery and not with GOGC=off. Whether or not the
// polls queued for a slot, taking thousands of them over from net/http
// leaves most of the memory a gateway of parked polls holds as garbage,
// which an idle gateway (no GC runs) would otherwise keep.
type gcDuringBursts struct {
	mu    sync.Mutex
	count int // bursts under way, over every Megaphone service in the process
	prev  int // the GC percent before the first

	// The wave of openings, lock-free (opened runs on every poll's open).
	opens       atomic.Int64 // polls opened in the current wave
	lastOpen    atomic.Int64 // unix nanos of the latest of them
	watching    atomic.Bool  // a timer waits for the wave to end
	lastRelease atomic.Int64 // unix nanos of the last release
	releases    atomic.Int64 // memory releases so far
}

const (
	releaseAfterOpens = 1024
	waveQuiet         = 250 * time.Millisecond
	releaseEvery      = 30 * time.Second
)

// opened notes one opened poll: a gap of waveQuiet starts a new wave, and
// the opening that makes a wave large enough starts watching for its end.
func (g *gcDuringBursts) opened() {
	now := time.Now().UnixNano()
	if now-g.lastOpen.Swap(now) > int64(waveQuiet) {
		g.opens.Store(0)
	}
	if g.opens.Add(1) >= releaseAfterOpens && g.watching.CompareAndSwap(false, true) {
		time.AfterFunc(waveQuiet, g.waveEnded)
	}
}

// waveEnded releases the wave's memory once no poll opened for
// waveQuiet, unless the last release was less than releaseEvery ago or
// the GC is off. Either way the next wave counts from zero.
func (g *gcDuringBursts) waveEnded() {
	now := time.Now().UnixNano()
	if d := now - g.lastOpen.Load(); d < int64(waveQuiet) {
		time.AfterFunc(waveQuiet-time.Duration(d), g.waveEnded)
		return
	}
	g.opens.Store(0)
	g.watching.Store(false)
	if now-g.lastRelease.Load() < int64(releaseEvery) || gcOff() {
		return
	}
	g.lastRelease.Store(now)
	debug.FreeOSMemory()
	g.releases.Add(1)
}

// gcOff reports whether the GC is off (GOGC=off), read without setting
// it: the runtime reports the percent as a uint64, -1 (off) wrapped.
func gcOff() bool {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	return s[0].Value.Kind() == rtmetrics.KindUint64 && int64(s[0].Value.Uint64()) < 0
}

var burstGC gcDuringBursts

func (g *gcDuringBursts) enter() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count++; g.count > 1 {
		return
	}
	g.prev = debug.SetGCPercent(burstGCPercent)
	if g.prev < burstGCPercent { // already lower, or off
		debug.SetGCPercent(g.prev)
	}
}

func (g *gcDuringBursts) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count--; g.count == 0 && g.prev >= burstGCPercent {
		debug.SetGCPercent(g.prev)
	}
}

// refuseWaiting answers every waiting poll 503: the gateway is shutting
// down. A poll that comes in after it still gets its 503 from
// openQueued when its turn comes.
func (h *api) refuseWaiting() {
	h.qmu.Lock()
	waiting := h.waiting
	h.waiting = nil
	if h.burst {
		h.burst = false
		burstGC.leave()
	}
	h.qmu.Unlock()
	for _, q := range waiting {
		h.refuse(q, protocol.ErrShuttingDown)
	}
}

// dispatch opens waiting polls, oldest first, while slots are free. It
// runs after every enqueue and every release, so no poll is left waiting
// beside a free slot.
func (h *api) dispatch() {
	for {
		h.qmu.Lock()
		if len(h.waiting) == 0 {
			h.qmu.Unlock()
			return
		}
		select {
		case h.opening <- struct{}{}:
		default:
			h.qmu.Unlock()
			return
		}
		q := h.waiting[0]
		h.waiting[0] = nil
		h.waiting = h.waiting[1:]
		if len(h.waiting) == 0 {
			h.waiting = nil // the backing array goes with the burst
			if h.burst {
				h.burst = false
				burstGC.leave()
			}
		}
		h.qmu.Unlock()
		go h.openQueued(q)
	}
}

// openQueued opens a waiting poll in the slot dispatch took for it and
// parks it, or answers why not (the status and body the handler would
// have answered, with "Connection: close").
func (h *api) openQueued(q *queued) {
	if q.ctx.Err() != nil { // shutdown began while it waited
		h.releaseSlot()
		h.refuse(q, protocol.ErrShuttingDown)
		return
	}
	p, err := h.b.Open(q.ctx, q.addr, q.after, q.arrival)
	h.releaseSlot()
	if err != nil {
		h.refuse(q, err)
		return
	}
	h.b.m.queuedOpened.Inc()
	setStreamHeaders(q.hdr, q.sse)
	h.parkConn(q.conn, q.hdr, q.reusable, q.ctx, p, q.sse, q.release)
}

// readRoute is the route of /read, for logs.
const readRoute = "/read/:address"

// refuse answers a taken-over poll that was not opened with err, as
// [api.fail] does, and closes the connection.
func (h *api) refuse(q *queued, err error) {
	rw := &rawResponse{hdr: q.hdr}
	h.fail(rw, readRoute, err)
	h.b.m.queued.WithLabelValues(strconv.Itoa(rw.status)).Inc()
	_ = q.conn.SetWriteDeadline(time.Now().Add(closeWait))
	if _, werr := q.conn.Write(rw.bytes()); werr != nil {
		h.log.Debug("refuse poll", "err", werr)
	}
	_ = q.conn.Close()
	q.release()
}

// rawResponse collects a whole response to write it on a connection
// taken over from net/http.
type rawResponse struct {
	hdr    http.Header
	status int
	body   []byte
}

func (r *rawResponse) Header() http.Header { return r.hdr }

func (r *rawResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *rawResponse) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, b...)
	return len(b), nil
}

// bytes renders the response with its length, closing the connection.
func (r *rawResponse) bytes() []byte {
	r.WriteHeader(http.StatusOK)
	r.hdr.Set("Content-Length", strconv.Itoa(len(r.body)))
	r.hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	r.hdr.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(r.status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(r.status))
	b.WriteString("\r\n")
	_ = r.hdr.Write(&b)
	b.WriteString("\r\n")
	b.Write(r.body)
	return b.Bytes()
}
