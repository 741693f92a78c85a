package pipe

import (
	"strings"
	"testing"
	"time"
)

// TestConfigDefaults checks that zero knobs take the defaults the key
// table announces, and that set ones are kept.
func TestConfigDefaults(t *testing.T) {
	d := Config{}.withDefaults()
	if d.Timeout != 0 || d.ClaimTimeout != 3*time.Second || d.MarkerTTL != 15*time.Second || d.SweepInterval != 30*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	for _, k := range Keys() {
		if k.Name == "pipe.timeout" && k.Default != d.Timeout {
			t.Fatalf("%s: key default %v, package default %v", k.Name, k.Default, d.Timeout)
		}
	}
	set := Config{Timeout: time.Minute, ClaimTimeout: time.Second, MarkerTTL: 2 * time.Second, SweepInterval: time.Millisecond}
	if got := set.withDefaults(); got.Timeout != set.Timeout || got.ClaimTimeout != set.ClaimTimeout ||
		got.MarkerTTL != set.MarkerTTL || got.SweepInterval != set.SweepInterval {
		t.Fatalf("set values changed: %+v", got)
	}
	if got := (Config{MarkerTTL: 500 * time.Millisecond}).withDefaults(); got.MarkerTTL != 15*time.Second {
		t.Fatalf("a marker TTL below 1s: %s", got.MarkerTTL)
	}
}

// TestConfigValidate checks that a bad pipe.timeout is named.
func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := Config{Timeout: -time.Second}.Validate()
	if err == nil || err.Error() != `invalid value for key "pipe.timeout": -1s must be >= 0` {
		t.Fatalf("got %v", err)
	}
	for _, k := range Keys() {
		if !strings.HasPrefix(k.Name, "pipe.") {
			t.Fatalf("key %s outside pipe.", k.Name)
		}
	}
}
