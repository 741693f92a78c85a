package middleman

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     Frame
	}{
		{"crlf", "PUB news\r\nCid: x\r\n\r\nhello\r\n.\r\n",
			Frame{Cmd: "PUB", Key: "news", Header: []Header{{"Cid", "x"}}, Body: []byte("hello")}},
		{"python service: LF lines, CRLF terminator", "RES calc\nRid: g-1-2\ncontent-type:text/plain\n\nline1\nline2\r\n.\r\n",
			Frame{Cmd: "RES", Key: "calc", Header: []Header{{"Rid", "g-1-2"}, {"Content-Type", "text/plain"}}, Body: []byte("line1\nline2")}},
		{"key with spaces", "SUB my key  here\r\n\r\n\r\n.\r\n", Frame{Cmd: "SUB", Key: "my key  here", Body: []byte{}}},
		{"command line only", "SUB k", Frame{Cmd: "SUB", Key: "k"}},
		{"no body", "SUB k\r\nA: 1\r\n\r\n", Frame{Cmd: "SUB", Key: "k", Header: []Header{{"A", "1"}}}},
		{"empty body with dot only", "PUB k\r\n\r\n.\r\n", Frame{Cmd: "PUB", Key: "k", Body: []byte{}}},
		{"body keeps its trailing newline", "PUB k\r\n\r\na\r\n\r\n.\r\n", Frame{Cmd: "PUB", Key: "k", Body: []byte("a\n")}},
		{"dot stuffing", "PUB k\r\n\r\n..\r\n..x\r\n.y\r\n.\r\n", Frame{Cmd: "PUB", Key: "k", Body: []byte(".\n.x\ny")}},
		{"terminator without final newline", "PUB k\n\nbody\n.", Frame{Cmd: "PUB", Key: "k", Body: []byte("body")}},
		{"header value trimmed, name canonical", "PUB k\r\nsetuid:   bob \t\r\n\r\n.\r\n",
			Frame{Cmd: "PUB", Key: "k", Header: []Header{{"Setuid", "bob"}}, Body: []byte{}}},
		{"unicode key", "PUB ключ.>\r\n\r\nπ\r\n.\r\n", Frame{Cmd: "PUB", Key: "ключ.>", Body: []byte("π")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse([]byte(c.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*f, c.want) {
				t.Fatalf("Parse = %#v\nwant    %#v", *f, c.want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	cases := map[string]string{
		"":                                  "empty command line",
		"\r\n":                              "empty command line",
		"PUB":                               "missing key",
		"PUB \r\n":                          "empty key",
		"pub k":                             "invalid command",
		" PUB k":                            "invalid command",
		"PUB k\r\nnocolon\r\n\r\n":          "without ':'",
		"PUB k\r\nbad name: v\r\n\r\n":      "invalid header name",
		"PUB k\r\n: v\r\n\r\n":              "invalid header name",
		"PUB k\r\n\r\nbody":                 "missing terminator",
		"PUB k\r\n\r\nbody\r\n.\r\nx":       "missing terminator",
		"PUB k\r\n\r\na\r\n.\r\nb\r\n.\r\n": "data after terminator",
		"PUB k\r\nA: x\rB: y\r\n\r\n":       "bare CR in header line",
		"PUB k\r\nA: x\r\r\n\r\n":           "bare CR in header line",
		"PUB k\nA\r: x\n\n":                 "bare CR in header line",
		"PUB k\rRid: x\r\n\r\n":             "bare CR in command line",
		"PUB k\r\r\n":                       "bare CR in command line",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed %q", in, err, want)
		}
		if err != nil && !strings.HasPrefix(WireText(err), "Malformed frame: ") {
			t.Errorf("WireText = %q", WireText(err))
		}
	}
}

func TestAppend(t *testing.T) {
	f := &Frame{Cmd: "PUB", Key: "k", Body: []byte(".a\nb\n")}
	f.Set("cid", "c1")
	f.Set("Uid", "")
	got := string(f.Bytes())
	want := "PUB k\r\nCid: c1\r\nUid: \r\n\r\n..a\r\nb\r\n\r\n.\r\n"
	if got != want {
		t.Fatalf("Bytes = %q, want %q", got, want)
	}
	f.Set("Cid", "c2")
	f.Del("uid")
	if len(f.Header) != 1 || f.Get("CID") != "c2" {
		t.Fatalf("Set/Del: %+v", f.Header)
	}
}

// TestNoNewlinePerHop relays a body through many parse/serialize hops.
func TestNoNewlinePerHop(t *testing.T) {
	for _, body := range []string{"", "x", "x\n", "\n", ".", "..\n.", "a\r\nb", "a\rb\r"} {
		wire := (&Frame{Cmd: "PUB", Key: "k", Body: []byte(body)}).Bytes()
		var f *Frame
		for range 5 {
			var err error
			if f, err = Parse(wire); err != nil {
				t.Fatal(err)
			}
			wire = f.Bytes()
		}
		if string(f.Body) != body {
			t.Errorf("body %q after 5 hops = %q", body, f.Body)
		}
	}
}

// TestTextprotoReadsOurFrames reads what the server sends the way the
// original Go clients do: a line, MIME headers, then a dot-reader body.
func TestTextprotoReadsOurFrames(t *testing.T) {
	body := "first\n.dotted\n\nlast"
	f := &Frame{Cmd: "RES", Key: "calc sum", Body: []byte(body)}
	f.Set("Cid", "gw-1")
	f.Set("Uid", "")
	f.Set("X-Trace", "t1")
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(f.Bytes())))
	line, err := r.ReadLine()
	if err != nil || line != "RES calc sum" {
		t.Fatalf("command line %q %v", line, err)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Cid") != "gw-1" || h.Get("X-Trace") != "t1" || len(h["Uid"]) != 1 {
		t.Fatalf("headers %v", h)
	}
	got, err := io.ReadAll(r.DotReader())
	if err != nil {
		t.Fatal(err)
	}
	// The dot-reader keeps the newline that precedes the terminator.
	if string(got) != body+"\n" {
		t.Fatalf("dot-reader body %q, want %q", got, body+"\n")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"PUB k\r\nCid: x\r\n\r\nhello\r\n.\r\n",
		"RES calc\nRid: g-1-2\n\nline1\nline2\r\n.\r\n",
		"SUB a b c",
		"PUB k\r\n\r\n..\r\n.\r\n",
		"INT UID\r\nForcid: g-1\r\nSetuid: u\r\n\r\n.\r\n",
		"PUB k\r\n\r\na\r\r\nb\r\n.\r\n",
		"PUB k\r\nX: a\rRid: b\r\n\r\n.\r\n",
		"PUB k\rX: y\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if strings.ContainsAny(fr.Cmd+fr.Key, "\r\n") {
			t.Fatalf("Parse(%q): command line %q %q holds CR or LF", in, fr.Cmd, fr.Key)
		}
		for _, h := range fr.Header {
			if strings.ContainsAny(h.Name+h.Value, "\r\n") {
				t.Fatalf("Parse(%q): header %q: %q holds CR or LF", in, h.Name, h.Value)
			}
		}
		wire := fr.Bytes()
		again, err := Parse(wire)
		if err != nil {
			t.Fatalf("Parse(Bytes(Parse(%q))) = %v (wire %q)", in, err, wire)
		}
		if again.Cmd != fr.Cmd || again.Key != fr.Key || !reflect.DeepEqual(again.Header, fr.Header) ||
			!bytes.Equal(again.Body, fr.Body) {
			t.Fatalf("round trip of %q:\n got %#v\nwant %#v", in, again, fr)
		}
		if !bytes.Equal(again.Bytes(), wire) {
			t.Fatalf("serialization not stable for %q", in)
		}
	})
}
