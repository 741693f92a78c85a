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

// TestConfigMaxReceivers checks pipe.max_receivers: the default the key
// table announces, and a value out of range named.
func TestConfigMaxReceivers(t *testing.T) {
	if d := (Config{}).withDefaults(); d.MaxReceivers != defaultMaxReceivers {
		t.Fatalf("default %d", d.MaxReceivers)
	}
	found := false
	for _, k := range Keys() {
		if k.Name == "pipe.max_receivers" {
			found = k.Default == defaultMaxReceivers
		}
	}
	if !found {
		t.Fatal("pipe.max_receivers missing from Keys or its default differs")
	}
	for _, bad := range []int{-1, MaxReceiversLimit + 1} {
		err := Config{MaxReceivers: bad}.Validate()
		if err == nil || !strings.Contains(err.Error(), `"pipe.max_receivers"`) {
			t.Fatalf("%d: %v", bad, err)
		}
	}
	if err := (Config{MaxReceivers: MaxReceiversLimit}).Validate(); err != nil {
		t.Fatal(err)
	}
}
