package megaphone

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestEncodeEventMatchesMarshal: the hand-built line is byte for byte
// what json.Marshal gives for the stored event, HTML escapes, invalid
// UTF-8 and line separators included.
func TestEncodeEventMatchesMarshal(t *testing.T) {
	type stored struct {
		SID  string          `json:"sid"`
		EID  string          `json:"eid"`
		TS   string          `json:"ts"`
		Body json.RawMessage `json:"body"`
	}
	sids := []string{"s", "peerbench", "a b-c_d.e/f:g", "<&>", `q"uote\`, "tab\there", "é ü 中", "bad\xffutf8", "line\u2028sep", strings.Repeat("x", 256)}
	bodies := []string{`1`, `"x"`, `null`, `{"a": [1, 2, {"b": "<script>&amp;</script>"}]}`, "{\n  \"pretty\": true\n}", `"\u2028 and \u2029 raw: ` + "\u2028\u2029" + `"`, `"é\ud83d\ude00"`, `[]`}
	for _, sid := range sids {
		for _, body := range bodies {
			st := newStamp()
			got, err := encodeEvent(sid, []byte(body), st)
			if err != nil {
				t.Fatalf("%q %q: %v", sid, body, err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(body)); err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(stored{SID: sid, EID: st.eid, TS: st.ts, Body: compact.Bytes()})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("sid %q body %q:\n got %s\nwant %s", sid, body, got, want)
			}
		}
	}
	if _, err := encodeEvent("s", []byte(`{"a":`), newStamp()); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("invalid body: %v", err)
	}
}

// TestAckError: an acknowledgement is recognised without decoding; an
// error answer comes back as the jetstream package's APIError.
func TestAckError(t *testing.T) {
	for _, ok := range []string{`{"stream":"SB_MEGAPHONE","seq":12}`, `{"stream":"SB_MEGAPHONE_P3", "domain":"hub", "seq":1}`, `{"stream":"S","seq":3,"duplicate":true}`} {
		if err := ackError([]byte(ok)); err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
	}
	full := `{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"},"stream":"SB_MEGAPHONE","seq":0}`
	var apiErr *jetstream.APIError
	if err := ackError([]byte(full)); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 || !strings.Contains(apiErr.Description, "maximum messages per subject") {
		t.Fatalf("full buffer: %v", err)
	}
	late := `{"stream":"SB_MEGAPHONE","seq":0,"error":{"code":500,"err_code":10049,"description":"stream store failed"}}`
	if err := ackError([]byte(late)); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10049 {
		t.Fatalf("error after the stream: %v", err)
	}
	for _, bad := range []string{``, `nope`, `{}`, `{"seq":1}`} {
		if err := ackError([]byte(bad)); !errors.Is(err, jetstream.ErrInvalidJSAck) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// TestPurgeError: a successful purge answer is recognised without
// decoding; an error answer or anything else is an error.
func TestPurgeError(t *testing.T) {
	if err := purgeError([]byte(`{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":3}`)); err != nil {
		t.Fatalf("success: %v", err)
	}
	var apiErr *jetstream.APIError
	notFound := `{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"success":false,"purged":0}`
	if err := purgeError([]byte(notFound)); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10059 {
		t.Fatalf("error answer: %v", err)
	}
	for _, bad := range []string{``, `nope`, `{"success":false}`} {
		if err := purgeError([]byte(bad)); err == nil {
			t.Fatalf("%q: no error", bad)
		}
	}
}
