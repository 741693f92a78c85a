package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/switchboard/switchboard/internal/subjects"
)

// upstreamView is one relay upstream with its agents.
type upstreamView struct {
	Name   string      `json:"name"`
	Agents []agentView `json:"agents"`
}

// agentView is one agent serving an upstream. The agent's address is not
// known to a gateway (micro discovery does not carry it), so it is not
// shown.
type agentView struct {
	ID       string `json:"id"`
	Version  string `json:"version"`
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"`
	InFlight int    `json:"inFlight"`
	Started  string `json:"started,omitempty"`
}

// Bounds on discovery replies, which come from agents (hostile input).
const (
	maxReplies     = 512
	maxReplyBytes  = 64 << 10
	maxAgentsShown = 512
)

func (s *Service) relay(ctx context.Context, _ *http.Request) (any, error) {
	infos, err := s.discover(ctx, subjects.MicroInfo)
	if err != nil {
		return nil, err
	}
	stats, err := s.discover(ctx, subjects.MicroStats)
	if err != nil {
		return nil, err
	}
	byID := map[string]*micro.Stats{}
	for _, raw := range stats {
		var st micro.Stats
		if json.Unmarshal(raw, &st) == nil && st.ID != "" {
			byID[st.ID] = &st
		}
	}
	ups := map[string]*upstreamView{}
	seen := map[string]bool{}
	for _, raw := range infos {
		var in micro.Info
		if json.Unmarshal(raw, &in) != nil || in.ID == "" || seen[in.ID] || len(seen) >= maxAgentsShown {
			continue
		}
		name, ok := subjects.RelayUpstreamFromService(in.Name)
		if !ok {
			continue
		}
		seen[in.ID] = true
		a := agentView{ID: clip(in.ID), Version: clip(in.Metadata["agent_version"])}
		if a.Version == "" {
			a.Version = clip(in.Version)
		}
		if st := byID[in.ID]; st != nil {
			a.Started = st.Started.UTC().Format(time.RFC3339)
			for _, e := range st.Endpoints {
				if e == nil {
					continue
				}
				a.Requests += e.NumRequests
				a.Errors += e.NumErrors
				var d struct {
					InFlight int `json:"in_flight"`
				}
				if len(e.Data) > 0 && json.Unmarshal(e.Data, &d) == nil && d.InFlight >= 0 {
					a.InFlight += d.InFlight
				}
			}
		}
		u := ups[name]
		if u == nil {
			u = &upstreamView{Name: clip(name)}
			ups[name] = u
		}
		u.Agents = append(u.Agents, a)
	}
	out := make([]upstreamView, 0, len(ups))
	for _, u := range ups {
		sort.Slice(u.Agents, func(i, j int) bool { return u.Agents[i].ID < u.Agents[j].ID })
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return struct {
		Upstreams []upstreamView `json:"upstreams"`
	}{out}, nil
}

// discover sends one micro discovery request and collects the replies
// that arrive within discoveryWait, bounded in number and size.
func (s *Service) discover(ctx context.Context, subject string) ([][]byte, error) {
	nc := s.deps.NC
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("console: discovery: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, fmt.Errorf("console: discovery: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, discoveryWait)
	defer cancel()
	var out [][]byte
	for len(out) < maxReplies {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the wait is over
		}
		if len(m.Data) <= maxReplyBytes {
			out = append(out, m.Data)
		}
	}
	return out, nil
}
