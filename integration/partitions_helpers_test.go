package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// placement is where one stream's replicas are.
type placement struct {
	leader string
	nodes  []string // the leader and the followers
}

// placementOf returns the placement of each stream of names, waiting
// until each has a leader.
func placementOf(t testing.TB, js jetstream.JetStream, names []string) map[string]placement {
	t.Helper()
	out := map[string]placement{}
	for _, name := range names {
		natstest.Eventually(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			if info.Cluster == nil || info.Cluster.Leader == "" {
				return fmt.Errorf("stream %s has no leader", name)
			}
			pl := placement{leader: info.Cluster.Leader, nodes: []string{info.Cluster.Leader}}
			for _, r := range info.Cluster.Replicas {
				pl.nodes = append(pl.nodes, r.Name)
			}
			out[name] = pl
			return nil
		})
	}
	return out
}

// leadersByNode groups the streams of pls by leader node.
func leadersByNode(pls map[string]placement) map[string][]string {
	out := map[string][]string{}
	for name, pl := range pls {
		out[pl.leader] = append(out[pl.leader], name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// spreadLeaders rebalances the leaders of names over nodes nodes the way
// an operator does with `nats stream cluster step-down --preferred`: while
// a node leads more than its share (names/nodes, rounded up), a stream is
// asked to step down in favour of a replica node that leads at least two
// fewer (moves that free the crowded node directly come first). It stops after a bounded
// number of step-downs and returns the leaders by node.
func spreadLeaders(t testing.TB, nc *nats.Conn, js jetstream.JetStream, names []string, nodes int) map[string][]string {
	t.Helper()
	share := (len(names) + nodes - 1) / nodes
	for range 4 * len(names) {
		pls := placementOf(t, js, names)
		byNode := leadersByNode(pls)
		stream, to := moveCandidate(pls, byNode, share)
		if stream == "" {
			return byNode
		}
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msg, err := nc.RequestWithContext(ctx, subjects.JSStreamLeaderStepDown(stream), req)
		cancel()
		if err != nil { // the API may be busy with the last election: look again
			t.Logf("step down %s to %s: %v", stream, to, err)
			continue
		}
		var resp struct {
			Error *struct{ Description string } `json:"error"`
		}
		if json.Unmarshal(msg.Data, &resp) != nil || resp.Error != nil {
			t.Logf("step down %s to %s: %s", stream, to, msg.Data)
			continue
		}
		natstest.Eventually(t, 30*time.Second, func() error {
			if l := placementOf(t, js, []string{stream})[stream].leader; l != to {
				return fmt.Errorf("stream %s led by %s, not yet %s", stream, l, to)
			}
			return nil
		})
	}
	return leadersByNode(placementOf(t, js, names))
}

// moveCandidate picks a stream and a replica node of it that leads at
// least two fewer streams than the stream's leader: a move that makes the
// spread strictly more even (so repeated moves end). It prefers streams
// whose leader is over its share; "" when no such move is left.
func moveCandidate(pls map[string]placement, byNode map[string][]string, share int) (stream, to string) {
	names := make([]string, 0, len(pls))
	for name := range pls {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { // most crowded leaders first
		if d := len(byNode[pls[b].leader]) - len(byNode[pls[a].leader]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	if len(names) == 0 || len(byNode[pls[names[0]].leader]) <= share {
		return "", ""
	}
	for _, name := range names {
		pl := pls[name]
		for _, n := range pl.nodes {
			if n != pl.leader && len(byNode[n])+1 < len(byNode[pl.leader]) {
				return name, n
			}
		}
	}
	return "", ""
}
