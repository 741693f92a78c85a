package jsutil

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestPubAckForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		seq  uint64
		code jetstream.ErrorCode // 0: no API error
		bad  bool                // ErrInvalidJSAck
	}{
		{in: `{"stream":"S","seq":42}`, seq: 42},
		{in: `{"stream":"S","seq":7,"duplicate":true}`, seq: 7},
		{in: `{"stream":"S","domain":"d","seq":9}`, seq: 9},
		{in: `{"stream":"S", "seq": 11}`, seq: 11},
		{in: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"S","seq":0}`, code: 10071},
		{in: `{"stream":"S","seq":0}`, bad: true},
		{in: `{"stream":"S","seq":99999999999999999999999}`, bad: true},
		{in: `{"stream":"","seq":3}`, bad: true},
		{in: `not json`, bad: true},
		{in: ``, bad: true},
		{in: `{"stream":"S","seq":12`, bad: true},
		{in: `{}`, bad: true},
		{in: `{"seq":1}`, bad: true},
		{in: `{"stream":"SB_MEGAPHONE_P3", "domain":"hub", "seq":1}`, seq: 1},
		{in: `{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"},"stream":"SB_MEGAPHONE","seq":0}`, code: 10077},
		{in: `{"stream":"SB_MEGAPHONE","seq":0,"error":{"code":500,"err_code":10049,"description":"stream store failed"}}`, code: 10049},
	} {
		seq, err := PubAck([]byte(tc.in))
		var apiErr *jetstream.APIError
		switch {
		case tc.code != 0:
			if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.code {
				t.Errorf("%s: err %v, want API error %d", tc.in, err, tc.code)
			}
		case tc.bad:
			if !errors.Is(err, jetstream.ErrInvalidJSAck) {
				t.Errorf("%s: seq %d err %v, want ErrInvalidJSAck", tc.in, seq, err)
			}
		case err != nil || seq != tc.seq:
			t.Errorf("%s: seq %d err %v, want %d", tc.in, seq, err, tc.seq)
		}
	}
}

func TestSuccessForms(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true}`: true,
		`{"success":true,"purged":3}`: true,
		`{"type":"x","error":{"code":404,"err_code":10037,"description":"no message found"},"success":false}`:                                                         false,
		`{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"success":false,"purged":0}`: false,
		`{"success":false}`: false,
		``:                  false,
		`garbage`:           false,
	} {
		if err := Success([]byte(in)); (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", in, err, ok)
		}
	}
	if err := Success([]byte(`{"success":false}`)); !errors.Is(err, ErrUnsuccessful) {
		t.Errorf("neither success nor error: %v, want ErrUnsuccessful", err)
	}
}

// TestLeanAgainstServer holds the hand-read forms to what a real
// nats-server answers: a publish ack, a refused expected-sequence publish
// and a message delete.
func TestLeanAgainstServer(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEAN", Subjects: []string{"lean.>"}}); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		m, err := nc.Request("lean.a", []byte("x"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := PubAck(m.Data); err != nil || seq != want {
			t.Fatalf("ack %q: seq %d err %v, want %d", m.Data, seq, err, want)
		}
	}
	msg := nats.NewMsg("lean.a")
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "1")
	m, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *jetstream.APIError
	if _, err := PubAck(m.Data); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("wrong expected sequence %q: err %v", m.Data, err)
	}
	del := func(seq string) error {
		m, err := nc.Request(subjects.JSMsgDelete("LEAN"), []byte(`{"seq":`+seq+`,"no_erase":true}`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return Success(m.Data)
	}
	if err := del("2"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := del("2"); !errors.As(err, &apiErr) || apiErr.ErrorCode != ErrCodeSequenceNotFound {
		t.Fatalf("second delete: %v, want sequence not found", err)
	}
}
