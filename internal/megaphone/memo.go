package megaphone

import (
	"sync"
	"sync/atomic"
)

// memo remembers values by key for a hot path, at most max of them: when
// a store would pass the bound, everything is forgotten at once (cheaper
// than tracking age, and a busy key is back after one miss). Only values
// that can never change for their key belong here.
type memo[K comparable, V any] struct {
	m     sync.Map
	count atomic.Int64
	max   int64
}

func newMemo[K comparable, V any](max int64) *memo[K, V] { return &memo[K, V]{max: max} }

func (c *memo[K, V]) load(k K) (V, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

func (c *memo[K, V]) store(k K, v V) {
	if c.count.Add(1) > c.max {
		c.m.Clear()
		c.count.Store(1)
	}
	c.m.Store(k, v)
}
