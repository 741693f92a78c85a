package subjects

import "testing"

func TestJSMsgDelete(t *testing.T) {
	if got := JSMsgDelete("SB_PIPE"); got != "$JS.API.STREAM.MSG.DELETE.SB_PIPE" {
		t.Fatalf("JSMsgDelete = %q", got)
	}
}

func TestJSMsgGet(t *testing.T) {
	if got := JSMsgGet("KV_X"); got != "$JS.API.STREAM.MSG.GET.KV_X" {
		t.Fatalf("JSMsgGet = %q", got)
	}
}
