package pipe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a set of gateways sharing one NATS (server or cluster), plus a
// client connection for looking at the queue.
type env struct {
	gws []*harness.Gateway
	js  jetstream.JetStream
}

func (e *env) url(i int) string { return e.gws[i%len(e.gws)].URL() }

func newEnv(t testing.TB, gws []*harness.Gateway, natsURL string) *env {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{gws: gws, js: js}
}

// embedded starts one gateway in embedded mode.
func embedded(t testing.TB, modify func(*gateway.Config)) *env {
	t.Helper()
	g := harness.StartEmbedded(t, modify)
	return newEnv(t, []*harness.Gateway{g}, g.EmbeddedURL())
}

// twoOnOneServer starts two gateways on one nats-server.
func twoOnOneServer(t testing.TB, modify func(*gateway.Config)) *env {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	return newEnv(t, harness.StartN(t, 2, srv.URL(), modify), srv.URL())
}

// twoOnCluster starts two gateways on a 3-node cluster, replicas 3.
func twoOnCluster(t testing.TB, modify func(*gateway.Config)) *env {
	t.Helper()
	c, gws := harness.StartOnCluster(t, 2, modify)
	return newEnv(t, gws, c.URLs())
}

// waiting returns how many parties of role wait on ns/name, cluster-wide.
func (e *env) waiting(t testing.TB, ns, name, role string) int {
	t.Helper()
	n, err := e.waitingNow(ns, name, role)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitingNow is waiting that returns the error of the stream read.
func (e *env) waitingNow(ns, name, role string) (int, error) {
	filter, err := subjects.PipeRole(ns, name, role)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := harness.Partitions()
	p, _ := subjects.PipePartitionOf(filter, k)
	s, err := e.js.Stream(ctx, subjects.PipeStreamOf(p, k))
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.PipeInPartition(filter, p, k)))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// awaitWaiting polls until exactly n parties of role wait on ns/name.
func (e *env) awaitWaiting(t testing.TB, ns, name, role string, n int) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := e.waiting(t, ns, name, role); got != n {
			return fmt.Errorf("%s/%s role %s: %d waiting, want %d", ns, name, role, got, n)
		}
		return nil
	})
}

func chanURL(base, ns, name string) string {
	return base + "/channels/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// result is a finished request.
type result struct {
	status int
	ct     string
	body   []byte
	err    error
	// header, length and te are the response's header, Content-Length
	// (-1 = none) and transfer encodings.
	header http.Header
	length int64
	te     []string
}

func do(ctx context.Context, method, u string, body io.Reader, ct string) result {
	var hdr http.Header
	if ct != "" {
		hdr = http.Header{"Content-Type": {ct}}
	}
	return doWith(ctx, method, u, body, hdr)
}

// doWith is do with any request headers.
func doWith(ctx context.Context, method, u string, body io.Reader, hdr http.Header) result {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return result{err: err}
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{
		status: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: b, err: err,
		header: resp.Header, length: resp.ContentLength, te: resp.TransferEncoding,
	}
}

// async runs do in a goroutine.
func async(ctx context.Context, method, u string, body io.Reader, ct string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- do(ctx, method, u, body, ct) }()
	return ch
}

// asyncWith runs doWith in a goroutine.
func asyncWith(ctx context.Context, method, u string, body io.Reader, hdr http.Header) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- doWith(ctx, method, u, body, hdr) }()
	return ch
}

func produce(ctx context.Context, base, ns, name string, body []byte, ct string) <-chan result {
	return async(ctx, http.MethodPost, chanURL(base, ns, name), bytes.NewReader(body), ct)
}

func consume(ctx context.Context, base, ns, name string) <-chan result {
	return async(ctx, http.MethodGet, chanURL(base, ns, name), nil, "")
}

func wait(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("request did not finish")
		return result{}
	}
}

func getJSON(t testing.TB, u string, v any) int {
	t.Helper()
	r := do(context.Background(), http.MethodGet, u, nil, "")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.status == http.StatusOK && v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, r.body)
		}
	}
	return r.status
}

// errorCode returns the code of an error envelope.
func errorCode(t testing.TB, r result) string {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("not an error envelope (%d): %q", r.status, r.body)
	}
	return e.Code
}
