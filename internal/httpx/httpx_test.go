package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrorMap(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	m := ErrorMap{{Err: errA, Status: http.StatusNotFound, Code: CodeNotFound}, {Err: errB, Status: http.StatusConflict, Code: "BUSY"}}
	if e := m.HTTPError(fmt.Errorf("op: %w", errB), 500, CodeInternal); e.Status != 409 || e.Code != "BUSY" || e.Message != "op: b" {
		t.Fatalf("wrapped sentinel: %+v", e)
	}
	if e := m.HTTPError(errors.New("other"), 500, CodeInternal); e.Status != 500 || e.Code != CodeInternal {
		t.Fatalf("fallback: %+v", e)
	}
	if _, ok := m.Lookup(nil); ok {
		t.Fatal("nil error matched")
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, http.StatusGone, "GONE", "gone")
	if rec.Code != 410 || rec.Header().Get("Content-Type") != "application/json" ||
		strings.TrimSpace(rec.Body.String()) != `{"code":"GONE","message":"gone"}` {
		t.Fatalf("got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

// TestWriteErrorOneLine: a message with line breaks (errors.Join, wrapped
// upstream text) is written on one line.
func TestWriteErrorOneLine(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, http.StatusBadRequest, CodeBadRequest, errors.Join(errors.New("bad request"), errors.New("json: x\r\n\r\ny\u2028z")).Error())
	var body ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Message != "bad request json: x y z" {
		t.Fatalf("message %q", body.Message)
	}
	if OneLine("plain") != "plain" || OneLine("a\n") != "a " || OneLine("\n\n") != " " {
		t.Fatal("OneLine")
	}
}
