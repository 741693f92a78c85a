package httpx

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopyFlush(t *testing.T) {
	buf := NewBuffers(4).Get()
	var out bytes.Buffer
	flushes := 0
	n, rerr, werr := CopyFlush(&out, func() error { flushes++; return nil }, strings.NewReader("hello world"), *buf)
	if n != 11 || rerr != nil || werr != nil || out.String() != "hello world" || flushes != 3 {
		t.Fatalf("n=%d rerr=%v werr=%v out=%q flushes=%d", n, rerr, werr, out.String(), flushes)
	}
	boom := errors.New("boom")
	if _, rerr, werr := CopyFlush(&out, nil, iotest.ErrReader(boom), *buf); rerr != boom || werr != nil {
		t.Fatalf("read error: %v %v", rerr, werr)
	}
	if _, rerr, werr := CopyFlush(&out, func() error { return boom }, strings.NewReader("x"), *buf); rerr != nil || werr != boom {
		t.Fatalf("flush error: %v %v", rerr, werr)
	}
}
