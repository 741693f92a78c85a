package pipe_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkFanOut4: one 256 MiB body per iteration to four receivers
// (?n=4), the producer on the target's first gateway and the receivers
// spread over all of them. MB/s is per receiver (each gets all bytes).
func BenchmarkFanOut4(b *testing.B) {
	const size = 256 << 20
	const n = 4
	run(b, func(b *testing.B, tg target) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		b.SetBytes(size)
		b.ResetTimer()
		for i := range b.N {
			ch := fmt.Sprintf("fan%d?n=%d", i, n)
			errs := make(chan error, n+1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tg.url(0, ch), newPatternReader(size))
				req.ContentLength = size
				errs <- drain(benchClient.Do(req))
			}()
			for r := range n {
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.url(r+1, ch), nil)
					resp, err := benchClient.Do(req)
					if err != nil {
						errs <- err
						return
					}
					k, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, make([]byte, 256<<10))
					resp.Body.Close()
					if err == nil && (k != size || resp.StatusCode != http.StatusOK) {
						err = fmt.Errorf("receiver %d: status %d, %d bytes", r, resp.StatusCode, k)
					}
					errs <- err
				}()
			}
			for range n + 1 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
