package pipe_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// parityTarget is a server the same curl-like sequences run against.
type parityTarget struct {
	name string
	// url is the address of channel ns/name on the i-th entry point.
	url func(i int, path string) string
}

// parityOutcome is what a sequence observed: statuses, bodies and the
// headers piping-server passes, in order.
type parityOutcome []string

func (o *parityOutcome) add(format string, args ...any) {
	*o = append(*o, fmt.Sprintf(format, args...))
}

// sentBytes is Switchboard's extra feedback line, absent in piping-server.
var sentBytes = regexp.MustCompile(`^\[INFO\] Sent \d+ bytes\.\n$`)

// sender is a producer whose feedback is read line by line.
type sender struct {
	t     *testing.T
	resp  *http.Response
	lines *bufio.Reader
}

func startSender(t *testing.T, ctx context.Context, u string, body string, hdr http.Header) *sender {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sender{t: t, resp: resp, lines: bufio.NewReader(resp.Body)}
}

// line reads the next feedback line, skipping Switchboard's byte count.
func (s *sender) line() string {
	s.t.Helper()
	for {
		l, err := s.lines.ReadString('\n')
		if err != nil && l == "" {
			return "EOF"
		}
		if !sentBytes.MatchString(l) {
			return l
		}
	}
}

// rest reads the feedback to its end.
func (s *sender) rest() string {
	var b strings.Builder
	for l := s.line(); l != "EOF"; l = s.line() {
		b.WriteString(l)
	}
	return b.String()
}

// runParity runs the sequences of TestPipingServerParity against tg.
func runParity(t *testing.T, tg parityTarget) parityOutcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var o parityOutcome
	get := func(i int, path string) <-chan result {
		return async(ctx, http.MethodGet, tg.url(i, path), nil, "")
	}
	recv := func(label string, c <-chan result) {
		r := wait(t, c)
		o.add("%s: %d %q type=%q length=%d disposition=%q piping=%q", label, r.status, r.body,
			r.header.Get("Content-Type"), r.length, r.header.Get("Content-Disposition"), r.header.Values("X-Piping"))
	}
	status := func(label string, r result) { o.add("%s: %d", label, r.status) }

	// 1. One to one, sender first, with the headers that pass.
	s := startSender(t, ctx, tg.url(0, "/par/one?progress=1"), "hello parity", http.Header{
		"Content-Type":        {"text/plain"},
		"Content-Disposition": {`attachment; filename="a.txt"`},
		"X-Piping":            {"v1", "v2"},
	})
	o.add("sender: %d %q", s.resp.StatusCode, s.line())
	c := get(1, "/par/one")
	o.add("sender: %q", s.line())
	recv("receiver", c)
	o.add("sender rest: %q", s.rest())

	// 2. One sender, two receivers; wrong n and no n refused meanwhile.
	// (No Content-Type at all is application/octet-stream here, as the
	// SPEC says, and none in piping-server: the sequences send one.)
	octet := http.Header{"Content-Type": {"application/octet-stream"}}
	s = startSender(t, ctx, tg.url(0, "/par/two?n=2&progress=1"), "to both", octet)
	o.add("sender: %d %q", s.resp.StatusCode, s.line())
	c1 := get(1, "/par/two?n=2")
	o.add("sender: %q", s.line())
	status("receiver n=3", wait(t, get(0, "/par/two?n=3")))
	status("receiver without n", wait(t, get(1, "/par/two")))
	c2 := get(0, "/par/two?n=2")
	o.add("sender: %q", s.line())
	recv("receiver 1", c1)
	recv("receiver 2", c2)
	o.add("sender rest: %q", s.rest())

	// 3. Bad n.
	for _, q := range []string{"?n=0", "?n=-2", "?n=abc"} {
		status("sender "+q, do(ctx, http.MethodPost, tg.url(0, "/par/bad"+q), strings.NewReader("x"), ""))
		status("receiver "+q, wait(t, get(1, "/par/bad"+q)))
	}

	// 4. A known length arrives as Content-Length.
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	s = startSender(t, ctx, tg.url(1, "/par/len?progress=1"), big, octet)
	o.add("sender: %d %q", s.resp.StatusCode, s.line())
	r := wait(t, get(0, "/par/len"))
	o.add("receiver: %d type=%q length=%d same=%v", r.status, r.header.Get("Content-Type"), r.length, string(r.body) == big)
	o.add("sender rest: %q", s.rest())
	return o
}

// TestPipingServerParity runs the same curl-like sequences against
// piping-server 1.12.9 (npm, as the benchmarks install it) and against two
// Switchboard gateways on one nats-server (senders and receivers on
// different ones), and requires the same outcome: statuses, bodies,
// passed headers and the sender's feedback lines (?progress=1 here;
// Switchboard's extra "Sent N bytes." line aside). Skipped only when
// npm is missing or cannot install piping-server.
func TestPipingServerParity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts piping-server")
	}
	piping := startPiping(t)
	e := twoOnOneServer(t, nil)
	want := runParity(t, parityTarget{name: "piping-server", url: func(_ int, path string) string {
		return piping + path
	}})
	got := runParity(t, parityTarget{name: "switchboard", url: func(i int, path string) string {
		return e.url(i) + "/channels" + path
	}})
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("step %d:\n piping-server: %s\n switchboard:   %s", i, w, g)
		}
	}
	if !t.Failed() {
		t.Logf("%d observations identical", len(want))
	}
}
