package subjects

import "testing"

func TestJSMsgDelete(t *testing.T) {
	if got := JSMsgDelete("SB_PIPE"); got != "$JS.API.STREAM.MSG.DELETE.SB_PIPE" {
		t.Fatalf("JSMsgDelete = %q", got)
	}
}
