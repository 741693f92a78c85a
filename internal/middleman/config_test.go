package middleman

import (
	"strings"
	"testing"
)

// TestConfigDefaults: the key table and withDefaults read the same
// defaults, and the defaults pass Validate.
func TestConfigDefaults(t *testing.T) {
	d := Config{}.withDefaults()
	want := map[string]any{"middleman.request_timeout": d.RequestTimeout, "middleman.max_frame": d.MaxFrame}
	for _, k := range Keys() {
		if !strings.HasPrefix(k.Name, "middleman.") || k.Usage == "" {
			t.Errorf("key %q: bad name or no usage", k.Name)
		}
		if w, ok := want[k.Name]; ok && k.Default != w {
			t.Errorf("key %q: default %v, withDefaults %v", k.Name, k.Default, w)
		}
	}
	if d.SendQueueBytes != 4*int(DefaultMaxFrame) || d.PingInterval != DefaultPingInterval {
		t.Errorf("withDefaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{RequestTimeout: -1, MaxFrame: 1023}.Validate()
	for _, key := range []string{`invalid value for key "middleman.request_timeout": -1ns must be > 0`, `invalid value for key "middleman.max_frame": 1023 must be >= 1KiB`} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate = %v, want %s", err, key)
		}
	}
}
