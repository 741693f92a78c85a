//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// Poller is one epoll set and the goroutine that waits on it. The zero
// value is not usable; call [New]. It starts its goroutine with the first
// registration.
type Poller struct {
	mu      sync.Mutex
	epfd    int      // -1 until the first registration
	file    *os.File // owns epfd, waited on in the Go runtime's poller
	closed  bool
	next    uint64
	waiting map[uint64]func()
	done    chan struct{}
}

// New returns a poller; [Poller.Close] releases it.
func New() *Poller { return &Poller{epfd: -1, waiting: make(map[uint64]func())} }

// Handle is one registered connection. Its methods are safe for
// concurrent use, but a connection has at most one wait armed at a time.
type Handle struct {
	p     *Poller
	raw   syscall.RawConn
	token uint64
	mu    sync.Mutex
	added bool // the fd is in the epoll set (armed or fired)
	gone  bool
}

// Register prepares conn for [Handle.Arm]. It returns [ErrUnsupported]
// when conn is not a TCP or Unix socket.
func (p *Poller) Register(conn net.Conn) (*Handle, error) {
	if w, ok := conn.(Wrapper); ok {
		conn = w.Socket()
	}
	var sc syscall.Conn
	switch c := conn.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil, ErrUnsupported
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, ErrUnsupported
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.next++
	h := &Handle{p: p, raw: raw, token: p.next}
	p.mu.Unlock()
	return h, nil
}

// start creates the epoll set and its goroutine once.
func (p *Poller) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.epfd >= 0 {
		return nil
	}
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	// The epoll fd itself is readable while events are ready, so the loop
	// waits for it in the Go runtime's poller like any socket: no thread
	// sits blocked in epoll_wait, and the goroutines the loop starts run at
	// once on its P (after a blocking epoll_wait they could wait for
	// sysmon to retake the P, milliseconds).
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return fmt.Errorf("netpoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("netpoll: %w", err)
	}
	p.epfd, p.file, p.done = fd, f, make(chan struct{})
	go p.loop(rc, p.done)
	return nil
}

// armEvents are one-shot: a readable socket fires once until re-armed,
// and hangups and errors fire too (EPOLLHUP, EPOLLERR always do).
const armEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// Arm runs f on a new goroutine once the connection has bytes to read,
// the peer shut it down or it failed, right away if that is already so.
// f runs at most once per Arm. It returns [ErrClosed] when the connection
// or the poller was closed; f then never runs.
func (h *Handle) Arm(f func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.p
	// p.mu is held across epoll_ctl so that Close cannot close the epoll
	// fd (and its number be reused) in between.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || h.gone {
		return ErrClosed
	}
	op := syscall.EPOLL_CTL_ADD
	if h.added {
		op = syscall.EPOLL_CTL_MOD
	}
	ev := syscall.EpollEvent{Events: armEvents}
	setToken(&ev, h.token)
	p.waiting[h.token] = f // before the fd can fire
	var ctlErr error
	err := h.raw.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil && ctlErr == nil {
		h.added = true
		return nil
	}
	delete(p.waiting, h.token)
	if err != nil { // the conn was closed
		h.gone = true
		return ErrClosed
	}
	return fmt.Errorf("netpoll: epoll_ctl: %w", ctlErr)
}

// Disarm cancels an armed wait and removes the connection from the set.
// It returns the callback of a wait it cancelled (nil if none was armed or
// it fired already). After the connection was closed it only drops the
// wait (the kernel removed the socket from the set, and Arm fails from
// then on), so closing first and then disarming leaves no wait behind
// that can never fire. Arm may be called again after a Disarm.
func (h *Handle) Disarm() func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.p
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.waiting[h.token]
	delete(p.waiting, h.token)
	if !h.added || p.closed {
		return f
	}
	h.added = false
	// Inside Control the fd cannot be closed and reused under us; once
	// the conn is closed the kernel dropped it from the set already.
	_ = h.raw.Control(func(fd uintptr) { _ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil) })
	return f
}

// Close stops the poller: waits still armed never fire. Connections are
// not closed.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	clear(p.waiting)
	file, done := p.file, p.done
	p.mu.Unlock()
	if file == nil {
		return nil
	}
	err := file.Close() // ends the loop's wait
	<-done
	return err
}

// loop waits for the epoll set to have events and starts the callbacks of
// the waits that fired. It ends when Close closed the set.
func (p *Poller) loop(rc syscall.RawConn, done chan struct{}) {
	defer close(done)
	events := make([]syscall.EpollEvent, 128)
	var werr error
	for werr == nil {
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, err := syscall.EpollWait(int(fd), events, 0)
				switch {
				case errors.Is(err, syscall.EINTR):
					continue
				case err != nil:
					werr = err
					return true
				}
				p.fire(events[:n])
				if n < len(events) {
					return false // drained: wait for the next events
				}
			}
		})
		if err != nil {
			return
		}
	}
}

// fire starts the callback of each fired wait on its own goroutine.
func (p *Poller) fire(events []syscall.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range events {
		t := token(&events[i])
		if f := p.waiting[t]; f != nil {
			delete(p.waiting, t)
			go f()
		}
	}
}

// The 64-bit user data of an epoll event is Fd and Pad in package syscall.
func setToken(ev *syscall.EpollEvent, t uint64) {
	ev.Fd, ev.Pad = int32(uint32(t)), int32(uint32(t>>32))
}

func token(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
