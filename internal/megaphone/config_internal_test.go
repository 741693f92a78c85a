package megaphone

import (
	"errors"
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
		"megaphone.webhook_url": d.WebhookURL, "megaphone.max_event_bytes": d.MaxEventBytes,
		"megaphone.keep_alive_polls": d.KeepAlivePolls,
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
		{func(c *Config) { c.MaxEventBytes = 1023 }, "megaphone.max_event_bytes"},
		{func(c *Config) { c.MaxEventBytes = -1 }, "megaphone.max_event_bytes"},
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
	c = ok
	c.MaxEventBytes = 1024
	if err := c.Validate(); err != nil {
		t.Errorf("max_event_bytes of 1KiB: %v", err)
	}
}

// TestCheckMaxEvent: the limit counts the NDJSON line, newline included,
// and is inclusive; 0 sets no limit of its own.
func TestCheckMaxEvent(t *testing.T) {
	b := &Broker{cfg: Config{MaxEventBytes: 65535}}
	if err := b.checkMaxEvent(make([]byte, 65534)); err != nil {
		t.Errorf("line of 65534 bytes + newline: %v", err)
	}
	err := b.checkMaxEvent(make([]byte, 65535))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "event of 65536 bytes exceeds megaphone.max_event_bytes of 65535") {
		t.Errorf("line of 65535 bytes + newline: %v", err)
	}
	b.cfg = Config{}.withDefaults()
	if err := b.checkMaxEvent(make([]byte, 4<<20)); err != nil {
		t.Errorf("default: %v", err)
	}
}
