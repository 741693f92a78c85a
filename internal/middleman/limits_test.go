package middleman

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestNewHubRefusesLongKeys(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	long := strings.Repeat("k", MaxKeyLen+1)
	for _, cfg := range []Config{{ServiceKeys: []string{"a", long}}, {ClientKeys: []string{long}}, {SuperKeys: []string{long}}} {
		if h, err := NewHub(nc, nil, cfg, nil, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrKeyTooLong) || strings.Contains(err.Error(), long) {
			if h != nil {
				h.Close()
			}
			t.Fatalf("NewHub with a key of %d bytes: %v, want ErrKeyTooLong without the key", len(long), err)
		}
	}
	h, err := NewHub(nc, nil, Config{ServiceKeys: []string{strings.Repeat("k", MaxKeyLen)}}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("key of MaxKeyLen bytes: %v", err)
	}
	h.Close()
}

func TestWireTextCutsLongKeys(t *testing.T) {
	for key, want := range map[string]string{
		"short":                               "Not trusted PUB short",
		strings.Repeat("k", MaxKeyLen):        "Not trusted PUB " + strings.Repeat("k", MaxKeyLen),
		strings.Repeat("k", MaxKeyLen+1):      "Not trusted PUB " + strings.Repeat("k", keyEcho) + "…",
		"ab" + strings.Repeat("€", MaxKeyLen): "Not trusted PUB ab" + strings.Repeat("€", 10) + "…",
	} {
		if got := WireText(&CommandError{Cmd: "PUB", Key: key, Err: ErrNotTrusted}); got != want {
			t.Errorf("WireText(key of %d bytes) = %q, want %q", len(key), got, want)
		}
	}
	if got := WireText(&CommandError{Cmd: "SUB", Key: "k", Err: subjectErr(errors.New("x"))}); got != "Internal error SUB k" {
		t.Errorf("WireText = %q", got)
	}
	_, err := subjects.MiddlemanPub(strings.Repeat("k", MaxKeyLen+1))
	if got := WireText(&CommandError{Cmd: "SUB", Key: "k", Err: subjectErr(err)}); got != "Key too long SUB k" {
		t.Errorf("WireText = %q", got)
	}
}
