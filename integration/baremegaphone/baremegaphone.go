// Package baremegaphone is the floor of Megaphone for benchmarks: the
// plainest Megaphone that the project's libraries allow (net/http, nats.go
// with jetstream, an embedded nats-server reached through an in-process
// connection, as the gateway does), with none of Megaphone's work: no
// claims, no KV, no checks, no limits, no addresses worth the name. An
// event is wrapped in a minimal envelope, stored with one synchronous
// JetStream publish, republished by the stream on bare.wake.<id>, handed by
// one shared subscription to the channel's mailbox, written to the open
// poll as its own chunk, and removed by one purge per 50 delivered events
// and at the poll's end. Whatever the gateway's Megaphone costs beyond it
// is Megaphone's own; whatever it costs is the price of the libraries.
// Never used by the gateway.
package baremegaphone

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subjects and the stream of the floor.
const (
	Stream     = "BARE_EVENTS"
	EventsPfx  = "bare.ev."
	WakePfx    = "bare.wake."
	BufferSize = 100 // MaxMsgsPerSubject
	PurgeEvery = 50  // delivered events per purge
	mailbox    = 1024
	maxBody    = 1 << 20 // bytes of a write's body
)

// Config configures a bare Megaphone.
type Config struct {
	// Listen is the HTTP host:port; port 0 picks one.
	Listen string
	// NATSListen is the embedded nats-server's client host:port; port 0
	// (or "") picks one on loopback.
	NATSListen string
	// StoreDir holds the JetStream file store.
	StoreDir string
	// Close makes every /read response end with Connection: close (as the
	// gateway's parked polls do); false keeps net/http's keep-alive.
	Close bool
	// PollLength is how long a /read lasts from its arrival; 0 means 20 s.
	PollLength time.Duration
}

// Bare is a running bare Megaphone.
type Bare struct {
	cfg    Config
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	ln     net.Listener
	srv    *http.Server
	eid    atomic.Uint64
	// Dropped counts wake-ups dropped on a full mailbox.
	Dropped atomic.Int64

	mu       sync.RWMutex
	channels map[string]*channel // by channel id
}

// channel is one channel's mailbox: what its wake-ups brought and no poll
// took yet, so that events written between two polls reach the next one.
type channel struct {
	events chan event
}

type event struct {
	seq  uint64
	data []byte
}

// Start starts the embedded nats-server, creates the stream, subscribes
// to the wake-ups and serves HTTP until Close.
func Start(cfg Config) (*Bare, error) {
	if cfg.PollLength == 0 {
		cfg.PollLength = 20 * time.Second
	}
	b := &Bare{cfg: cfg, channels: map[string]*channel{}}
	if err := b.startNATS(); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.startHTTP(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bare) startNATS() error {
	host, port := "127.0.0.1", server.RANDOM_PORT
	if b.cfg.NATSListen != "" {
		h, p, err := net.SplitHostPort(b.cfg.NATSListen)
		if err != nil {
			return err
		}
		if port, err = strconv.Atoi(p); err != nil {
			return err
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		host = h
	}
	ns, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: b.cfg.StoreDir,
		NoSigs: true, NoLog: true, MaxPayload: 1 << 20,
	})
	if err != nil {
		return err
	}
	ns.Start()
	b.ns = ns
	if !ns.ReadyForConnections(15 * time.Second) {
		return errors.New("baremegaphone: nats-server not ready")
	}
	// As the gateway's in-process connection (internal/embedded).
	if b.nc, err = nats.Connect("", nats.InProcessServer(ns), nats.FlusherTimeout(0)); err != nil {
		return err
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b.stream, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              Stream,
		Subjects:          []string{EventsPfx + "*"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: BufferSize,
		RePublish:         &jetstream.RePublish{Source: EventsPfx + "*", Destination: WakePfx + "{{wildcard(1)}}"},
	})
	if err != nil {
		return err
	}
	_, err = b.nc.Subscribe(WakePfx+">", b.wake)
	return err
}

func (b *Bare) startHTTP() error {
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return err
	}
	b.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("POST /create", b.create)
	mux.HandleFunc("POST /write/{addr}/{stream}", b.write)
	mux.HandleFunc("GET /read/{addr}", b.read)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return nil
}

// Addr is the HTTP listener's host:port.
func (b *Bare) Addr() string { return b.ln.Addr().String() }

// NATSURL is the embedded nats-server's client URL.
func (b *Bare) NATSURL() string { return b.ns.ClientURL() }

// Close stops HTTP (closing open polls), the connection and the server.
func (b *Bare) Close() {
	if b.srv != nil {
		_ = b.srv.Close()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// wake hands a republished event to its channel's mailbox.
func (b *Bare) wake(m *nats.Msg) {
	seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	b.mu.RLock()
	ch := b.channels[m.Subject[len(WakePfx):]]
	b.mu.RUnlock()
	if ch == nil {
		return
	}
	select {
	case ch.events <- event{seq, m.Data}:
	default:
		b.Dropped.Add(1)
	}
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (b *Bare) create(w http.ResponseWriter, _ *http.Request) {
	id := make([]byte, 22)
	_, _ = rand.Read(id)
	for i := range id {
		id[i] = alnum[int(id[i])%len(alnum)]
	}
	b.mu.Lock()
	b.channels[string(id)] = &channel{events: make(chan event, mailbox)}
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"channelId": string(id), "consumerAddress": string(id), "producerAddress": string(id),
	})
}

func (b *Bare) write(w http.ResponseWriter, r *http.Request) {
	// Only a channel this process created names a subject, and a body is
	// at most maxBody: the two checks any server owes its network input.
	id := r.PathValue("addr")
	b.mu.RLock()
	known := b.channels[id] != nil
	b.mu.RUnlock()
	if !known {
		http.Error(w, "no such channel", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) == 0 {
		body = []byte("null")
	}
	ev := make([]byte, 0, len(body)+96)
	ev = append(ev, `{"sid":`...)
	ev = strconv.AppendQuote(ev, r.PathValue("stream"))
	ev = append(ev, `,"eid":"`...)
	ev = strconv.AppendUint(ev, b.eid.Add(1), 10)
	ev = append(ev, `","ts":`...)
	ev = strconv.AppendInt(ev, time.Now().UnixMilli(), 10)
	ev = append(ev, `,"body":`...)
	ev = append(append(ev, body...), '}')
	if _, err := b.js.Publish(r.Context(), EventsPfx+id, ev); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

func (b *Bare) read(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("addr")
	b.mu.RLock()
	ch := b.channels[id]
	b.mu.RUnlock()
	if ch == nil {
		http.Error(w, "no such channel", http.StatusNotFound)
		return
	}
	if b.cfg.Close {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	end := time.NewTimer(b.cfg.PollLength)
	defer end.Stop()
	var last uint64 // newest delivered sequence not purged yet
	n := 0
	defer func() {
		if n > 0 {
			b.purge(id, last)
		}
	}()
	for {
		select {
		case ev := <-ch.events:
			_, _ = w.Write(ev.data)
			_, _ = w.Write([]byte{'\n'})
			if err := rc.Flush(); err != nil {
				return
			}
			last, n = ev.seq, n+1
			if n == PurgeEvery {
				b.purge(id, last)
				n = 0
			}
		case <-end.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// purge removes channel id's events up to and including seq.
func (b *Bare) purge(id string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.stream.Purge(ctx, jetstream.WithPurgeSubject(EventsPfx+id), jetstream.WithPurgeSequence(seq+1))
}
