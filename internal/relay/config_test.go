package relay

import (
	"strings"
	"testing"
)

// TestConfigDefaults: the key table and withDefaults read the same
// defaults, and the defaults pass Validate.
func TestConfigDefaults(t *testing.T) {
	d := Config{}.withDefaults()
	want := map[string]any{"relay.agent_wait": d.AgentWait, "relay.ack_timeout": d.AckTimeout, "relay.response_timeout": d.ResponseTimeout}
	for _, k := range Keys() {
		if !strings.HasPrefix(k.Name, "relay.") || k.Usage == "" {
			t.Errorf("key %q: bad name or no usage", k.Name)
		}
		if w, ok := want[k.Name]; ok && k.Default != w {
			t.Errorf("key %q: default %v, withDefaults %v", k.Name, k.Default, w)
		}
	}
	if d.Heartbeat != DefaultHeartbeat || d.PeerTimeout != DefaultPeerTimeout || d.InlineMax != DefaultInlineMax {
		t.Errorf("withDefaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{AckTimeout: -1, APIKeys: map[string]string{"a": "", "": "k", "ok": "k"}}.Validate()
	for _, want := range []string{
		`invalid value for key "relay.agent_wait": 0s must be > 0`,
		`invalid value for key "relay.ack_timeout": -1ns must be > 0`,
		`invalid value for key "relay.response_timeout": 0s must be > 0`,
		`invalid value for key "relay.api_keys": entry "a" needs a non-empty upstream name and key`,
		`invalid value for key "relay.api_keys": entry "" needs a non-empty upstream name and key`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), `"ok"`) {
		t.Errorf("Validate refused a good entry: %v", err)
	}
}
