package megaphone

import (
	"strings"
	"testing"
	"time"
)

// TestConfigDefaults: the key table and a zero Config built in code agree
// on every default, and the defaults are valid.
func TestConfigDefaults(t *testing.T) {
	d := Config{}.withDefaults()
	want := map[string]any{
		"megaphone.agent": d.Agent, "megaphone.buffer_size": d.BufferSize,
		"megaphone.write_wait": d.WriteWait, "megaphone.poll_duration": d.PollDuration,
		"megaphone.channel_ttl": d.ChannelTTL, "megaphone.admin_token": d.AdminToken,
		"megaphone.webhook_url": d.WebhookURL,
	}
	keys := Keys()
	if len(keys) != len(want) {
		t.Fatalf("%d keys, want %d", len(keys), len(want))
	}
	for _, k := range keys {
		if w, ok := want[k.Name]; !ok || k.Default != w {
			t.Errorf("key %s: default %#v, withDefaults gives %#v", k.Name, k.Default, w)
		}
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if d.MarkerTTL != time.Hour {
		t.Errorf("MarkerTTL default = %s", d.MarkerTTL)
	}
}

// TestConfigValidate: each bad value is refused naming its key.
func TestConfigValidate(t *testing.T) {
	ok := Config{}.withDefaults()
	for _, tc := range []struct {
		mod func(*Config)
		key string
	}{
		{func(c *Config) { c.Agent = "" }, "megaphone.agent"},
		{func(c *Config) { c.Agent = "a.b" }, "megaphone.agent"},
		{func(c *Config) { c.Agent = strings.Repeat("a", MaxAgentLen+1) }, "megaphone.agent"},
		{func(c *Config) { c.BufferSize = 0 }, "megaphone.buffer_size"},
		{func(c *Config) { c.WriteWait = 0 }, "megaphone.write_wait"},
		{func(c *Config) { c.PollDuration = -time.Second }, "megaphone.poll_duration"},
		{func(c *Config) { c.ChannelTTL = 500 * time.Millisecond }, "megaphone.channel_ttl"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), `invalid value for key "`+tc.key+`"`) {
			t.Errorf("%+v: Validate = %v, want an error naming %s", c, err, tc.key)
		}
	}
	c := ok
	c.Agent = strings.Repeat("a", MaxAgentLen)
	if err := c.Validate(); err != nil {
		t.Errorf("agent of %d bytes: %v", MaxAgentLen, err)
	}
}
