package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// SSEDone is the data of the sentinel event that ends an OpenAI stream.
const SSEDone = "[DONE]"

// IsDone reports whether data is the end-of-stream sentinel.
func IsDone(data []byte) bool { return string(data) == SSEDone }

// SSEWriter writes server-sent events, flushing after each so that a client
// sees every token as soon as it is decided.
type SSEWriter struct {
	w io.Writer
	f http.Flusher
}

// NewSSEWriter returns a writer of events to w. When w is an
// http.ResponseWriter it also sets the event-stream headers (the caller
// writes the status, or the first event implies 200).
func NewSSEWriter(w io.Writer) *SSEWriter {
	s := &SSEWriter{w: w}
	if rw, ok := w.(http.ResponseWriter); ok {
		h := rw.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // ask reverse proxies not to buffer
	}
	if f, ok := w.(http.Flusher); ok {
		s.f = f
	}
	return s
}

// WriteJSON sends v, encoded as JSON, as one unnamed event.
func (s *SSEWriter) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sse: encode event: %w", err)
	}
	return s.WriteEvent("", b)
}

// WriteEvent sends one event. A non-empty name is sent as an "event:" field;
// data holding newlines is sent as several "data:" lines, which the reader
// joins back. The name may not hold a line break and data may not hold a
// carriage return: SSE has no way to carry either.
func (s *SSEWriter) WriteEvent(name string, data []byte) error {
	if bytes.ContainsAny([]byte(name), "\r\n") {
		return fmt.Errorf("sse: event name %q holds a line break", name)
	}
	if bytes.IndexByte(data, '\r') >= 0 {
		return errors.New("sse: event data holds a carriage return")
	}
	var b bytes.Buffer
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	for {
		line, rest, more := bytes.Cut(data, []byte{'\n'})
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
		if !more {
			break
		}
		data = rest
	}
	b.WriteByte('\n')
	return s.write(b.Bytes())
}

// WriteComment sends a comment line, which readers ignore; it keeps idle
// connections open through proxies.
func (s *SSEWriter) WriteComment(text string) error {
	if bytes.ContainsAny([]byte(text), "\r\n") {
		return fmt.Errorf("sse: comment %q holds a line break", text)
	}
	return s.write([]byte(": " + text + "\n\n"))
}

// Done sends the [DONE] sentinel that ends an OpenAI stream.
func (s *SSEWriter) Done() error { return s.write([]byte("data: " + SSEDone + "\n\n")) }

func (s *SSEWriter) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("sse: write: %w", err)
	}
	if s.f != nil {
		s.f.Flush()
	}
	return nil
}

// Event is one dispatched server-sent event.
type Event struct {
	// Name is the "event:" field, empty when the event had none (the SSE
	// specification calls that type "message").
	Name string
	// Data is the "data:" lines joined with "\n".
	Data []byte
	// ID is the last event ID seen so far in the stream ("id:" fields
	// persist across events, as the specification says).
	ID string
	// Retry is the last valid "retry:" value in milliseconds, 0 if none.
	Retry int
}

// MaxSSELine bounds one line of an event stream, so that a broken or hostile
// peer cannot make a reader buffer without limit.
const MaxSSELine = 16 << 20

// SSEReader parses an event stream following the WHATWG server-sent events
// grammar: CRLF, CR or LF line endings, comments (lines starting with ':'),
// "field: value" lines with one optional space after the colon, lines with
// no colon as a field with an empty value, multi-line data joined with "\n",
// dispatch on a blank line, and no dispatch of an event without data or of
// an unfinished event at end of stream. A leading byte order mark is skipped.
type SSEReader struct {
	br      *bufio.Reader
	line    []byte
	skipLF  bool // the last line ended with CR: a following LF belongs to it
	started bool
	id      string
	retry   int
}

// NewSSEReader returns a reader of the event stream r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{br: bufio.NewReaderSize(r, 32<<10)}
}

// Next returns the next event, or io.EOF at the end of the stream. Other
// errors are the underlying reader's, or a line over MaxSSELine.
func (r *SSEReader) Next() (Event, error) {
	var (
		name string
		data []byte
		has  bool // data buffer non-empty (a data field was seen)
	)
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !has {
				name = ""
				continue
			}
			data = data[:len(data)-1] // the LF after the last data line
			return Event{Name: name, Data: data, ID: r.id, Retry: r.retry}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			data = append(data, value...)
			data = append(data, '\n')
			has = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.id = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && isDigits(value) {
				r.retry = n
			}
		}
	}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// readLine returns the next line without its terminator. The slice is valid
// until the next call. An unterminated last line is dropped (io.EOF).
func (r *SSEReader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		if _, err := r.br.Peek(1); err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("sse: read: %w", err)
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if !r.started {
			// Skip a leading byte order mark; Peek(3) waits for all of it.
			r.started = true
			if b, _ := r.br.Peek(3); bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
				r.br.Discard(3)
			}
			continue
		}
		if r.skipLF {
			r.skipLF = false
			if buf[0] == '\n' {
				r.br.Discard(1)
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			if len(r.line)+len(buf) > MaxSSELine {
				return nil, fmt.Errorf("sse: line longer than %d bytes", MaxSSELine)
			}
			r.line = append(r.line, buf...)
			r.br.Discard(len(buf))
			continue
		}
		if len(r.line)+i > MaxSSELine {
			return nil, fmt.Errorf("sse: line longer than %d bytes", MaxSSELine)
		}
		r.line = append(r.line, buf[:i]...)
		r.skipLF = buf[i] == '\r'
		r.br.Discard(i + 1)
		return r.line, nil
	}
}

// ReadSSE reads the event stream r and calls fn with each event's name
// ("" when it had no "event:" field) and data. The [DONE] sentinel is passed
// to fn like any event (test it with IsDone), after which ReadSSE returns nil
// without reading further: nothing may follow it in an OpenAI stream. It
// also returns nil at the end of the stream, and fn's error as it is.
func ReadSSE(r io.Reader, fn func(event string, data []byte) error) error {
	sr := NewSSEReader(r)
	for {
		ev, err := sr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(ev.Name, ev.Data); err != nil {
			return err
		}
		if IsDone(ev.Data) {
			return nil
		}
	}
}
