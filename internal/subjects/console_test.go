package subjects

import "testing"

func TestConsoleNames(t *testing.T) {
	if got := ConsoleStatus(); got != "sb.console.status" {
		t.Fatalf("ConsoleStatus = %q", got)
	}
	for name, want := range map[string]bool{
		MegaphoneStream: true, "KV_" + MegaphoneChannelsBucket: true, "KV_" + MiddlemanTrustBucket: true,
		PipeStream: true, "ORDERS": false, "KV_other": false, "": false, "sb_lower": false,
	} {
		if got := IsSwitchboardStream(name); got != want {
			t.Errorf("IsSwitchboardStream(%q) = %v, want %v", name, got, want)
		}
	}
}
