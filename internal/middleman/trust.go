package middleman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Enablement commands.
const (
	CmdEPUB = "EPUB"
	CmdESUB = "ESUB"
	CmdEREQ = "EREQ"
)

// trustLookupTimeout bounds the KV read made on a cache miss.
const trustLookupTimeout = 2 * time.Second

type grant struct{ cmd, key string }

// Trust is the cluster-wide set of EPUB/ESUB/EREQ enablements. It lives in
// a KV bucket, so it survives gateway restarts, and every gateway keeps a
// local copy fed by a KV watcher, so checks cost a map lookup. A check that
// misses the copy reads the bucket once, which closes the window between an
// enablement on one gateway and its arrival at another's watcher.
type Trust struct {
	kv      jetstream.KeyValue
	log     *slog.Logger
	mu      sync.RWMutex
	granted map[grant]struct{}
	watcher jetstream.KeyWatcher
	stop    context.CancelFunc // ends the watcher even if the connection closed undrained
	done    chan struct{}
}

// OpenTrust creates (idempotently) the bucket, loads every enablement and
// starts watching for new ones. It returns once the local copy is complete.
func OpenTrust(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*Trust, error) {
	kv, err := jsutil.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      subjects.MiddlemanTrustBucket,
		Description: "middleman EPUB/ESUB/EREQ enablements",
		History:     1,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("middleman: trust bucket: %w", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("middleman: watch trust bucket: %w", err)
	}
	t := &Trust{kv: kv, log: log, granted: map[grant]struct{}{}, watcher: w, stop: stop, done: make(chan struct{})}
	if err := t.loadInitial(ctx); err != nil {
		_ = w.Stop()
		stop()
		return nil, err
	}
	go t.watch()
	return t, nil
}

func (t *Trust) loadInitial(ctx context.Context) error {
	for {
		select {
		case e, ok := <-t.watcher.Updates():
			if !ok {
				return fmt.Errorf("middleman: trust watcher closed: %w", ErrInternal)
			}
			if e == nil {
				return nil
			}
			t.apply(e)
		case <-ctx.Done():
			return fmt.Errorf("middleman: load trust bucket: %w", ctx.Err())
		}
	}
}

func (t *Trust) watch() {
	defer close(t.done)
	for e := range t.watcher.Updates() {
		if e != nil {
			t.apply(e)
		}
	}
}

func (t *Trust) apply(e jetstream.KeyValueEntry) {
	cmd, key, err := subjects.ParseMiddlemanTrustKey(e.Key())
	if err != nil {
		t.log.Warn("ignoring foreign key in trust bucket", "key", e.Key())
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		t.granted[grant{cmd, key}] = struct{}{}
	} else {
		delete(t.granted, grant{cmd, key})
	}
}

func (t *Trust) cached(cmd, key string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.granted[grant{cmd, key}]
	return ok
}

// Enabled reports whether cmd (EPUB, ESUB, EREQ) was enabled for key. On
// a miss of the local copy it reads the bucket when lookup is true.
func (t *Trust) Enabled(ctx context.Context, cmd, key string, lookup bool) (bool, error) {
	if t.cached(cmd, key) {
		return true, nil
	}
	if !lookup {
		return false, nil
	}
	k, err := subjects.MiddlemanTrustKey(cmd, key)
	if err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, trustLookupTimeout)
	defer cancel()
	_, err = t.kv.Get(ctx, k)
	switch {
	case err == nil:
		t.mu.Lock()
		t.granted[grant{cmd, key}] = struct{}{}
		t.mu.Unlock()
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("middleman: trust lookup %s: %w: %v", k, ErrInternal, err)
	}
}

// Enable records cmd for key, cluster-wide and durably.
func (t *Trust) Enable(ctx context.Context, cmd, key string) error {
	if t.cached(cmd, key) {
		return nil
	}
	k, err := subjects.MiddlemanTrustKey(cmd, key)
	if err != nil {
		return fmt.Errorf("middleman: enable %s: %w", cmd, subjectErr(err))
	}
	ctx, cancel := context.WithTimeout(ctx, trustLookupTimeout)
	defer cancel()
	if _, err := t.kv.Put(ctx, k, []byte{'1'}); err != nil {
		return fmt.Errorf("middleman: enable %s: %w: %v", k, ErrInternal, err)
	}
	t.mu.Lock()
	t.granted[grant{cmd, key}] = struct{}{}
	t.mu.Unlock()
	return nil
}

// Close stops the watcher and waits for it.
func (t *Trust) Close() {
	_ = t.watcher.Stop()
	t.stop()
	<-t.done
}
