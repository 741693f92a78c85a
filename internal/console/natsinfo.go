package console

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// natsView answers /admin/api/nats: this gateway's NATS connection and
// the streams and buckets Switchboard uses.
type natsView struct {
	Status        string       `json:"status"`
	Server        string       `json:"server"` // URL, credentials removed
	ServerName    string       `json:"serverName"`
	ServerVersion string       `json:"serverVersion"`
	Cluster       string       `json:"cluster"`
	RTTMicros     int64        `json:"rttMicros"`
	Reconnects    uint64       `json:"reconnects"`
	Streams       []streamView `json:"streams"`
	StreamsError  string       `json:"streamsError,omitempty"`
}

type streamView struct {
	Name     string `json:"name"`
	Bucket   bool   `json:"bucket"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	Replicas int    `json:"replicas"`
	Leader   string `json:"leader"`
}

// maxStreams bounds the streams looked at.
const maxStreams = 200

func (s *Service) natsInfo(ctx context.Context, _ *http.Request) (any, error) {
	nc := s.deps.NC
	v := natsView{Status: nc.Status().String(), Streams: []streamView{}, Reconnects: nc.Stats().Reconnects}
	if nc.IsConnected() {
		v.Server, v.ServerName, v.ServerVersion, v.Cluster = s.serverURL(), nc.ConnectedServerName(), nc.ConnectedServerVersion(), nc.ConnectedClusterName()
		if rtt, err := nc.RTT(); err == nil {
			v.RTTMicros = rtt.Microseconds()
		}
	}
	if s.deps.JS == nil {
		return v, nil
	}
	lister := s.deps.JS.ListStreams(ctx)
	for info := range lister.Info() {
		if len(v.Streams) >= maxStreams {
			break
		}
		if !subjects.IsSwitchboardStream(info.Config.Name) {
			continue
		}
		v.Streams = append(v.Streams, view(info))
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		v.StreamsError = err.Error()
	}
	sort.Slice(v.Streams, func(i, j int) bool { return v.Streams[i].Name < v.Streams[j].Name })
	return v, nil
}

func view(info *jetstream.StreamInfo) streamView {
	sv := streamView{
		Name: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes, Replicas: info.Config.Replicas,
	}
	if b, ok := cutKV(sv.Name); ok {
		sv.Name, sv.Bucket = b, true
	}
	if info.Cluster != nil {
		sv.Leader = info.Cluster.Leader
	}
	return sv
}

func cutKV(name string) (string, bool) {
	if len(name) > 3 && name[:3] == "KV_" {
		return name[3:], true
	}
	return name, false
}

// discoveryWait is how long the relay view collects micro discovery
// replies.
const discoveryWait = 500 * time.Millisecond
