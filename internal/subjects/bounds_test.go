package subjects

import (
	"errors"
	"strings"
	"testing"
)

// worst is the longest name whose token is longest: every byte escaped.
var worst = strings.Repeat(".", MaxNameLen)

// tooLong is one byte over the bound.
var tooLong = strings.Repeat("a", MaxNameLen+1)

// TestBoundedBuilders builds every subject that takes user input with the
// worst names allowed, and checks that each stays within MaxSubjectLen,
// while one byte more is refused with ErrTooLong before anything is built.
func TestBoundedBuilders(t *testing.T) {
	one := map[string]func(string) (string, error){
		"RelayRequest":  RelayRequest,
		"RelayInbox":    RelayInbox,
		"RelayCancel":   RelayCancel,
		"RelayService":  RelayService,
		"MegaphoneEv":   MegaphoneEvents,
		"MegaphoneWake": MegaphoneWake,
		"MegaphoneRoom": MegaphoneRoom,
		"MegaphoneKV":   MegaphoneKVKey,
		"KVKeySubject":  func(k string) (string, error) { return KVKeySubject(MegaphoneReadersBucket, k) },
		"MiddlemanPub":  MiddlemanPub,
		"MiddlemanReq":  MiddlemanReq,
		"TrustKey":      func(k string) (string, error) { return MiddlemanTrustKey("EPUB", k) },
		"PipeNamespace": PipeNamespace,
		"PipeChannel":   func(n string) (string, error) { return PipeChannel(n, n) },
		"PipeRole":      func(n string) (string, error) { return PipeRole(n, n, PipeConsumer) },
		"PipeEntry":     func(n string) (string, error) { return PipeEntry(n, n, PipeProducer, strings.Repeat("g", 64)) },
		"PipeClaim":     func(n string) (string, error) { return PipeClaim(strings.Repeat("g", 64), n) },
		"PipeGone":      func(n string) (string, error) { return PipeGone(n, n) },
		"PipeAlive":     PipeAlive,
		"PipePub":       func(n string) (string, error) { return PipePub(n, n) },
	}
	for name, build := range one {
		got, err := build(worst)
		if err != nil {
			t.Errorf("%s(worst): %v", name, err)
		} else if len(got) > MaxSubjectLen {
			t.Errorf("%s(worst) = %d bytes, over MaxSubjectLen %d", name, len(got), MaxSubjectLen)
		}
		if _, err := build(tooLong); !errors.Is(err, ErrTooLong) {
			t.Errorf("%s(%d bytes) err = %v, want ErrTooLong", name, len(tooLong), err)
		}
	}
}

// TestSubjectRoomForReply checks the arithmetic in the bound's comment: a
// PUB line with the longest subject and a reply as long still fits in
// nats-server's default max_control_line of 4096 bytes.
func TestSubjectRoomForReply(t *testing.T) {
	line := len("HPUB ") + MaxSubjectLen + 1 + MaxSubjectLen + 1 + 20 + 1 + 20 + 2
	if line > 4096 {
		t.Fatalf("HPUB line of %d bytes exceeds 4096", line)
	}
}

func TestDecodeRefusesLongTokens(t *testing.T) {
	for _, tok := range []string{tooLong, strings.Repeat("_2E", MaxNameLen+1), strings.Repeat("x", 10000)} {
		if _, err := Decode(tok); !errors.Is(err, ErrTooLong) {
			t.Errorf("Decode(%d bytes) err = %v, want ErrTooLong", len(tok), err)
		}
	}
	if _, err := Decode(strings.Repeat("_2E", MaxNameLen)); err != nil {
		t.Errorf("Decode(worst token): %v", err)
	}
}
