package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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
// an operator does with `nats stream cluster step-down`: while a node
// leads more than its share (names/nodes, rounded up), one of its streams
// is asked to step down and elects another leader. It stops after a
// bounded number of step-downs and returns the leaders by node.
func spreadLeaders(t testing.TB, nc *nats.Conn, js jetstream.JetStream, names []string, nodes int) map[string][]string {
	t.Helper()
	share := (len(names) + nodes - 1) / nodes
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 8 * len(names) {
		byNode := leadersByNode(placementOf(t, js, names))
		crowded := ""
		for _, led := range byNode {
			if len(led) > share {
				crowded = led[0]
				break
			}
		}
		if crowded == "" {
			return byNode
		}
		msg, err := nc.RequestWithContext(ctx, subjects.JSStreamLeaderStepDown(crowded), nil)
		if err != nil {
			t.Fatalf("step down %s: %v", crowded, err)
		}
		var resp struct {
			Error *struct{ Description string } `json:"error"`
		}
		if json.Unmarshal(msg.Data, &resp) != nil || resp.Error != nil {
			t.Logf("step down %s: %s", crowded, msg.Data)
		}
	}
	return leadersByNode(placementOf(t, js, names))
}
