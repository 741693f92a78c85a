package megaphone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// ChannelInfo is one live channel as the admin API lists it.
type ChannelInfo struct {
	ConsumerAddress string `json:"consumerAddress"`
	Buffered        uint64 `json:"buffered"`
}

// List returns every live channel with its number of buffered events,
// sorted by address.
func (b *Broker) List(ctx context.Context) ([]ChannelInfo, error) {
	buffered := map[string]uint64{}
	info, err := b.events.Info(ctx, jetstream.WithSubjectFilter(subjects.MegaphoneEventsAll()))
	if err != nil {
		return nil, fmt.Errorf("megaphone: list buffers: %w", err)
	}
	for subj, n := range info.State.Subjects {
		if id, err := subjects.ChannelFromMegaphoneSubject(subj); err == nil {
			buffered[id] = n
		}
	}
	lister, err := b.channels.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("megaphone: list channels: %w", err)
	}
	out := []ChannelInfo{}
	for key := range lister.Keys() {
		e, err := b.channels.Get(ctx, key)
		if err != nil {
			continue // expired meanwhile
		}
		var meta channelMeta
		if json.Unmarshal(e.Value(), &meta) != nil {
			continue
		}
		out = append(out, ChannelInfo{ConsumerAddress: ConsumerAddress(meta.Agent, key), Buffered: buffered[key]})
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ConsumerAddress, out[j].ConsumerAddress) < 0 })
	return out, nil
}

// Delete deletes the channel at consumer address addr now, with its
// buffered events; an open poll of it ends.
func (b *Broker) Delete(ctx context.Context, addr string) error {
	if !strings.Contains(addr, ".") {
		return fmt.Errorf("%w: %q has no agent part", ErrBadAddress, addr)
	}
	agent, id, ok := parseConsumer(addr)
	if !ok {
		return fmt.Errorf("%w: %q is not a consumer address", ErrNotFound, addr)
	}
	k, err := b.channelKey(id)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		r, err := k.last(ctx)
		if err != nil {
			return err
		}
		if !r.live || !matches(address{agent: agent, id: id}, r.data) {
			return fmt.Errorf("%w: %s", ErrNotFound, addr)
		}
		err = b.channels.Purge(ctx, id, jetstream.LastRevision(r.rev), jetstream.PurgeTTL(b.cfg.MarkerTTL))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) || attempt == 3 {
			return fmt.Errorf("megaphone: delete channel: %w", err)
		}
	}
	_, err = b.dispose(ctx, id)
	return err
}
