package relay

import "github.com/switchboard/switchboard/internal/httpx"

// bulkBufs are the large read buffers of upgraded connections, one
// natsio chunk each; a direction holds one only while its reads fill
// their buffer (see copyBuf).
var bulkBufs = httpx.NewBuffers(upgradeChunk)

// copyBuf is the read buffer of one direction of an upgraded connection:
// the small pooled buffer while the traffic is small or idle, and a large
// one (one natsio chunk) from the read after one that filled its buffer
// until a read comes back short. Bulk data then moves in full chunks
// (fewer NATS messages and syscalls), while an idle or chatty connection
// never blocks in a read holding a large buffer for long.
type copyBuf struct {
	small, big []byte
	cur        []byte
}

func newCopyBuf() *copyBuf {
	s := getUpgradeBuf()
	return &copyBuf{small: s, cur: s}
}

// next picks the buffer of the next read, after a read of n bytes whose
// data was passed on.
func (c *copyBuf) next(n int) {
	switch {
	case n == len(c.cur) && c.big == nil:
		p := bulkBufs.Get()
		c.big, c.cur = *p, *p
	case n < len(c.cur) && c.big != nil:
		b := c.big
		c.big, c.cur = nil, c.small
		bulkBufs.Put(&b)
	}
}

// release gives the buffers back.
func (c *copyBuf) release() {
	if c.big != nil {
		b := c.big
		c.big = nil
		bulkBufs.Put(&b)
	}
	putUpgradeBuf(c.small)
}
