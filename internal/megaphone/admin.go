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
	out := []ChannelInfo{}
	for p := range b.parts {
		var err error
		if out, err = b.listPartition(ctx, p, out); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ConsumerAddress, out[j].ConsumerAddress) < 0 })
	return out, nil
}

// listPartition appends the live channels of partition p to out.
func (b *Broker) listPartition(ctx context.Context, p int, out []ChannelInfo) ([]ChannelInfo, error) {
	buffered := map[string]uint64{}
	info, err := b.events[p].Info(ctx, jetstream.WithSubjectFilter(subjects.MegaphoneEventsAllIn(p, b.parts)))
	if err != nil {
		return nil, fmt.Errorf("megaphone: list buffers: %w", err)
	}
	for subj, n := range info.State.Subjects {
		if id, err := subjects.ChannelFromMegaphoneSubject(subj); err == nil {
			buffered[id] = n
		}
	}
	lister, err := b.channels[p].ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("megaphone: list channels: %w", err)
	}
	for key := range lister.Keys() {
		e, err := b.channels[p].Get(ctx, key)
		if err != nil {
			continue // expired meanwhile
		}
		var meta channelMeta
		if json.Unmarshal(e.Value(), &meta) != nil {
			continue
		}
		out = append(out, ChannelInfo{ConsumerAddress: ConsumerAddress(meta.Agent, key), Buffered: buffered[key]})
	}
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
		err = b.channels[b.part(id)].Purge(ctx, id, jetstream.LastRevision(r.rev), jetstream.PurgeTTL(b.cfg.MarkerTTL))
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
