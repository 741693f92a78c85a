package megaphone

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
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
