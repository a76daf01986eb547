package openai

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

type ev struct {
	Name, Data string
}

func readAll(t *testing.T, r io.Reader) ([]ev, error) {
	t.Helper()
	var got []ev
	err := ReadSSE(r, func(name string, data []byte) error {
		got = append(got, ev{name, string(data)})
		return nil
	})
	return got, err
}

func TestReadSSEGrammar(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []ev
	}{
		{"lf", "data: a\n\ndata: b\n\n", []ev{{"", "a"}, {"", "b"}}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []ev{{"", "a"}, {"", "b"}}},
		{"cr", "data: a\r\rdata: b\r\r", []ev{{"", "a"}, {"", "b"}}},
		{"mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", []ev{{"", "a\nb\nc"}}},
		{"multi-line data", "data: one\ndata: two\ndata:\n\n", []ev{{"", "one\ntwo\n"}}},
		{"no space after colon", "data:x\n\n", []ev{{"", "x"}}},
		{"only one space stripped", "data:  x\n\n", []ev{{"", " x"}}},
		{"comments ignored", ": keepalive\ndata: a\n: more\n\n", []ev{{"", "a"}}},
		{"event name", "event: delta\ndata: {}\n\n", []ev{{"delta", "{}"}}},
		{"event name reset after dispatch", "event: x\ndata: 1\n\ndata: 2\n\n", []ev{{"x", "1"}, {"", "2"}}},
		{"event without data not dispatched", "event: ping\n\ndata: a\n\n", []ev{{"", "a"}}},
		{"empty data is dispatched", "data\n\n", []ev{{"", ""}}},
		{"field without colon", "data\ndata\n\n", []ev{{"", "\n"}}},
		{"unknown fields ignored", "foo: bar\nid: 7\nretry: 10\ndata: a\n\n", []ev{{"", "a"}}},
		{"unfinished event dropped", "data: a\n\ndata: b\n", []ev{{"", "a"}}},
		{"unterminated line dropped", "data: a\n\ndata: b", []ev{{"", "a"}}},
		{"bom skipped", "\xEF\xBB\xBFdata: a\n\n", []ev{{"", "a"}}},
		{"blank lines between events", "\n\n\ndata: a\n\n\n\n", []ev{{"", "a"}}},
		{"done stops", "data: a\n\ndata: [DONE]\n\ndata: after\n\n", []ev{{"", "a"}, {"", "[DONE]"}}},
		{"field name case-sensitive", "Data: a\ndata: b\n\n", []ev{{"", "b"}}},
		{"colon in value", "data: a:b\n\n", []ev{{"", "a:b"}}},
		{"empty stream", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, rd := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", strings.NewReader(tt.in)},
				{"byte-at-a-time", iotest.OneByteReader(strings.NewReader(tt.in))},
			} {
				got, err := readAll(t, rd.r)
				if err != nil {
					t.Fatalf("%s: %v", rd.name, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s: got %q, want %q", rd.name, got, tt.want)
				}
			}
		})
	}
}

func TestSSEReaderIDAndRetry(t *testing.T) {
	r := NewSSEReader(strings.NewReader("id: 1\nretry: 250\ndata: a\n\ndata: b\n\nid: x\x00y\nretry: 1x\ndata: c\n\n"))
	var ids []string
	var retries []int
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
		retries = append(retries, e.Retry)
	}
	if want := []string{"1", "1", "1"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ids %q, want %q (id persists; an id with NUL is ignored)", ids, want)
	}
	if want := []int{250, 250, 250}; !reflect.DeepEqual(retries, want) {
		t.Errorf("retries %v, want %v", retries, want)
	}
}

func TestReadSSECallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := ReadSSE(strings.NewReader("data: a\n\ndata: b\n\n"), func(string, []byte) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d events, want stop after 1", err, n)
	}
}

func TestReadSSEReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(boom))
	got, err := readAll(t, r)
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Fatalf("got %q, %v; want one event then boom", got, err)
	}
}

func TestSSELineLimit(t *testing.T) {
	in := io.MultiReader(strings.NewReader("data: "), io.LimitReader(repeatReader('x'), MaxSSELine+10))
	if _, err := readAll(t, in); err == nil || !strings.Contains(err.Error(), "line longer") {
		t.Fatalf("err %v, want line limit", err)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestSSEWriter(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewSSEWriter(rec)
	if err := w.WriteJSON(map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteEvent("ping", []byte("x\ny")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteComment("keepalive"); err != nil {
		t.Fatal(err)
	}
	if err := w.Done(); err != nil {
		t.Fatal(err)
	}
	want := "data: {\"a\":1}\n\nevent: ping\ndata: x\ndata: y\n\n: keepalive\n\ndata: [DONE]\n\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	if !rec.Flushed {
		t.Error("not flushed")
	}
	if err := w.WriteEvent("a\nb", nil); err == nil {
		t.Error("event name with newline accepted")
	}
	if err := w.WriteEvent("", []byte("a\rb")); err == nil {
		t.Error("data with CR accepted")
	}
}

// FuzzReadSSE checks that the reader never panics or returns impossible
// events on arbitrary input, and that events written by SSEWriter are read
// back identically. The input doubles as a list of events: NUL-separated
// name/data pairs.
func FuzzReadSSE(f *testing.F) {
	f.Add([]byte("data: a\n\n"))
	f.Add([]byte("event: x\r\ndata: 1\r\ndata: 2\r\n\r\n"))
	f.Add([]byte(":c\rdata\r\rid: 3\nretry: 9\n\n"))
	f.Add([]byte("x\x00{\"a\":\"b\\nc\"}\x00\x00multi\nline\n\x00done\x00[DONE]\x00after\x00z"))
	f.Add([]byte("\xEF\xBB\xBFdata: bom\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// Arbitrary input: no panic, and events hold no impossible bytes.
		_ = ReadSSE(bytes.NewReader(in), func(name string, data []byte) error {
			if strings.ContainsAny(name, "\r\n") || bytes.IndexByte(data, '\r') >= 0 {
				t.Fatalf("event %q has a line break in its name or CR in data %q", name, data)
			}
			return nil
		})

		// Round trip.
		parts := bytes.Split(in, []byte{0})
		var want []ev
		var buf bytes.Buffer
		w := NewSSEWriter(&buf)
		for i := 0; i+1 < len(parts); i += 2 {
			name, data := string(parts[i]), parts[i+1]
			if err := w.WriteEvent(name, data); err != nil {
				if !strings.ContainsAny(name, "\r\n") && bytes.IndexByte(data, '\r') < 0 {
					t.Fatalf("WriteEvent(%q, %q): %v", name, data, err)
				}
				continue
			}
			want = append(want, ev{name, string(data)})
		}
		for i, e := range want {
			if e.Data == SSEDone {
				want = want[:i+1]
				break
			}
		}
		got, err := readAll(t, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip: got %q, want %q", got, want)
		}
	})
}
