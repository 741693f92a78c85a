package megaphone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Protocol is the only read protocol of Megaphone 0.10.
const Protocol = "HTTP_STREAM_NDJSON_V1"

// cacheTTL bounds how long a gateway trusts that a channel it saw exists
// without asking NATS again. It is well inside the 10 s bound on serving
// an expired channel.
const cacheTTL = 2 * time.Second

// Channel is a created channel's addresses.
type Channel struct {
	// ID is the consumer address (megaphone's channelId).
	ID string
	// ConsumerAddress is agent.{50 alphanumerics}.1, the read address.
	ConsumerAddress string
	// ProducerAddress is agent.token, a write-only address.
	ProducerAddress string
	// Agent is the agent name.
	Agent string
}

// channelMeta is the value of a channel's key.
type channelMeta struct {
	Agent string `json:"agent"`
}

// CheckProtocols returns ErrProtocol when offered is non-empty and does
// not contain [Protocol].
func CheckProtocols(offered []string) error {
	if len(offered) == 0 {
		return nil
	}
	for _, p := range offered {
		if p == Protocol {
			return nil
		}
	}
	return fmt.Errorf("%w: only %s is supported", ErrProtocol, Protocol)
}

// Create makes a channel that lives ChannelTTL unless read.
func (b *Broker) Create(ctx context.Context) (Channel, error) {
	id := randomAlnum(idLen)
	k, err := b.channelKey(id)
	if err != nil {
		return Channel{}, err
	}
	meta, _ := json.Marshal(channelMeta{Agent: b.cfg.Agent})
	rev, err := k.put(ctx, meta, 0, b.cfg.ChannelTTL)
	if err != nil {
		return Channel{}, fmt.Errorf("megaphone: create channel: %w", err)
	}
	b.m.created.Inc()
	if _, err := b.sighted(id); err != nil {
		return Channel{}, err
	}
	// A new channel holds no event: its first poll here needs no read if
	// no wake-up comes before it.
	b.wakeups.watchQuiet(id)
	b.revs.put(id, keyRevs{ch: rev, chData: meta, resume: true})
	consumer := ConsumerAddress(b.cfg.Agent, id)
	return Channel{
		ID:              consumer,
		ConsumerAddress: consumer,
		ProducerAddress: b.codec.ProducerAddress(b.cfg.Agent, id),
		Agent:           b.cfg.Agent,
	}, nil
}

func (b *Broker) channelKey(id string) (kvKey, error) {
	key, err := subjects.MegaphoneKVKey(id)
	if err != nil {
		return kvKey{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	return newKVKey(b, subjects.MegaphoneChannelsBucketOf(b.part(id), b.parts), key)
}

// claimKey is channel id's reader claim key (see Poll and hold.go).
func (b *Broker) claimKey(id string) (kvKey, error) {
	return newKVKey(b, subjects.MegaphoneReadersBucketOf(b.part(id), b.parts), id)
}

// matches reports whether a live key value belongs to address a. Every
// poll opening checks it, so the value the gateways write for an agent
// name that JSON does not escape ({"agent":"<name>"}) is compared as
// bytes; any other value is decoded.
func matches(a address, value []byte) bool {
	const head, tail = `{"agent":"`, `"}`
	if plainJSON(a.agent) && len(value) == len(head)+len(a.agent)+len(tail) &&
		string(value[:len(head)]) == head && string(value[len(value)-len(tail):]) == tail {
		return string(value[len(head):len(value)-len(tail)]) == a.agent
	}
	var meta channelMeta
	return json.Unmarshal(value, &meta) == nil && meta.Agent == a.agent
}

// plainJSON reports whether encoding/json writes s as it is (no escapes).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// lookup returns the event subject of a's channel when the channel
// exists. It trusts a recent sighting, then a direct get, and asks the
// stream leader before it answers ErrNotFound (a follower may lag behind a
// create on another gateway). A sighting carries the subject, so a write
// to a busy channel finds both in one map lookup.
func (b *Broker) lookup(ctx context.Context, a address, useCache bool) (string, error) {
	if useCache {
		if subj, ok := b.cache.has(a.id); ok {
			return subj, nil
		}
	}
	if e, err := b.channels[b.part(a.id)].Get(ctx, a.id); err == nil {
		if !matches(a, e.Value()) {
			return "", fmt.Errorf("%w: %s", ErrNotFound, a.id)
		}
		return b.sighted(a.id)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("megaphone: lookup: %w", err)
	}
	k, err := b.channelKey(a.id)
	if err != nil {
		return "", err
	}
	r, err := k.last(ctx)
	if err != nil {
		return "", err
	}
	if !r.live || !matches(a, r.data) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, a.id)
	}
	return b.sighted(a.id)
}

// sighted records that channel id was seen alive, with its event subject,
// which it returns.
func (b *Broker) sighted(id string) (string, error) {
	subj, err := subjects.MegaphoneEventsIn(id, b.parts)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	b.cache.add(id, subj)
	return subj, nil
}

// Exists reports whether addr (either form) names a live channel. A
// malformed address is simply false.
func (b *Broker) Exists(ctx context.Context, addr string) (bool, error) {
	a, err := b.codec.resolve(addr)
	if err != nil {
		return false, nil
	}
	_, err = b.lookup(ctx, a, true)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// existsCache remembers channels seen alive for a short time, with
// their event subjects.
type existsCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	m    map[string]sighting
	adds int
}

// sighting is a channel seen alive: until when to trust it, and the
// channel's event subject.
type sighting struct {
	exp  time.Time
	subj string
}

// maxCached bounds the cache; past it the cache starts over.
const maxCached = 100_000

// sweepEvery: every this many additions, the cache drops its expired
// sightings, so that it holds about the channels seen in the last ttl
// rather than every channel created since it last started over (the ids
// of all parked polls' channels, 100,000 at most).
const sweepEvery = 1024

// putBounded stores v under k in m, one of the gateway's bounded caches
// (its caller holds the cache's lock): every sweepEvery additions, counted
// in adds, it first drops the entries whose time (since(v)) lies limit
// or more before now, and past maxCached entries m starts over.
func putBounded[V any](m map[string]V, adds *int, k string, v V, now time.Time, since func(V) time.Time, limit time.Duration) {
	if *adds++; *adds%sweepEvery == 0 {
		for key, old := range m {
			if now.Sub(since(old)) >= limit {
				delete(m, key)
			}
		}
	}
	if len(m) >= maxCached {
		clear(m)
	}
	m[k] = v
}

func newExistsCache(ttl time.Duration) *existsCache {
	return &existsCache{ttl: ttl, m: make(map[string]sighting)}
}

func (c *existsCache) add(id, subj string) {
	now := time.Now()
	c.mu.Lock()
	// Expired sightings go.
	putBounded(c.m, &c.adds, id, sighting{exp: now.Add(c.ttl), subj: subj}, now, sightingExp, 0)
	c.mu.Unlock()
}

func sightingExp(s sighting) time.Time { return s.exp }

// has returns the event subject of channel id if it was seen alive
// within the ttl.
func (c *existsCache) has(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[id]
	if ok && time.Now().After(s.exp) {
		delete(c.m, id)
		return "", false
	}
	return s.subj, ok
}

func (c *existsCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}
