package jsutil

import (
	"context"
	"sync"
)

// Parallel runs every fn at once and waits for all of them. The first
// error cancels the context of the others and is returned; errors that
// follow it (usually the cancellation) are dropped. Provisioning steps that
// do not depend on each other run this way, so start-up costs the slowest
// step rather than the sum of all.
func Parallel(ctx context.Context, fns ...func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	return first
}
