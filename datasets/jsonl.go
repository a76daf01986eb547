package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// fieldNames are the input fields Import reads from each row.
type fieldNames struct {
	text  string // required
	label string // "" = no labels
	id    string // "" = content-hash ids
}

// rawRow is one input row as a format reader hands it to Import, before
// the checks common to all formats (UTF-8, empty text) are applied.
type rawRow struct {
	row   int64  // 1-based row or line in the file
	text  string // never missing: a reader reports a missing text as a RowError
	label string // "" = no label
	id    string // "" unless the IDField is set
}

// rowReader yields the rows of one input file. next returns io.EOF at the
// end, a RowError for a bad row (reading may go on), and any other error
// when the file cannot be read further.
type rowReader interface {
	next() (rawRow, error)
}

// jsonlReader reads JSON Lines: one JSON object per line. Blank lines are
// skipped (they still count for line numbers); a leading UTF-8 byte order
// mark and "\r\n" line ends are accepted.
type jsonlReader struct {
	file   string
	fields fieldNames
	r      *bufio.Reader
	line   int64
	long   []byte // holds a line longer than r's buffer
}

func newJSONLReader(file string, r io.Reader, fields fieldNames) *jsonlReader {
	return &jsonlReader{file: file, fields: fields, r: bufio.NewReaderSize(r, 1<<20)}
}

func (j *jsonlReader) next() (rawRow, error) {
	for {
		line, err := j.readLine()
		if err != nil {
			return rawRow{}, err
		}
		j.line++
		if j.line == 1 {
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return parseJSONLRow(j.file, j.line, line, j.fields)
	}
}

var utf8BOM = []byte("\xef\xbb\xbf")

// readLine returns the next line without its "\n" or "\r\n", or io.EOF when
// the input is exhausted. The slice is valid until the next call.
func (j *jsonlReader) readLine() ([]byte, error) {
	line, err := j.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		j.long = append(j.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = j.r.ReadSlice('\n')
			j.long = append(j.long, line...)
		}
		line = j.long
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: line %d: %w", j.file, j.line+1, err)
	}
	if len(line) == 0 && err != nil {
		return nil, io.EOF
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}

// parseJSONLRow extracts the wanted fields from one JSONL line. Every error
// it returns is a RowError naming file and row.
func parseJSONLRow(file string, row int64, line []byte, fields fieldNames) (rawRow, error) {
	bad := func(field, format string, args ...any) (rawRow, error) {
		return rawRow{}, RowError{File: file, Row: row, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkJSONObject(file, row, line); err != nil {
		return rawRow{}, err
	}
	var text, label, id []byte // raw JSON values; nil = absent
	forEachMember(line, func(key, val []byte) {
		switch {
		case keyIs(key, fields.text):
			text = val
		case fields.label != "" && keyIs(key, fields.label):
			label = val
		case fields.id != "" && keyIs(key, fields.id):
			id = val
		}
	})
	// The same name may serve as text and label or id; look those up again.
	if fields.label == fields.text {
		label = text
	}
	if fields.id == fields.text {
		id = text
	}
	out := rawRow{row: row}
	switch {
	case text == nil:
		return bad(fields.text, "missing (row has fields: %s)", strings.Join(memberNames(line, 20), ", "))
	case text[0] == 'n':
		return bad(fields.text, "text is null, want a string")
	case text[0] != '"':
		return bad(fields.text, "text must be a string, got %s", jsonKind(text[0]))
	}
	out.text = jsonString(text)
	if label != nil {
		switch k := label[0]; {
		case k == '"':
			out.label = strings.TrimSpace(jsonString(label))
		case k == 'n': // null: no label
		case k == '-' || ('0' <= k && k <= '9'):
			out.label = string(label)
		default:
			return bad(fields.label, "label must be a string or number, got %s", jsonKind(k))
		}
	}
	if fields.id != "" {
		switch {
		case id == nil:
			return bad(fields.id, "missing (row has fields: %s)", strings.Join(memberNames(line, 20), ", "))
		case id[0] == '"':
			out.id = jsonString(id)
		case id[0] == '-' || ('0' <= id[0] && id[0] <= '9'):
			out.id = string(id)
		default:
			return bad(fields.id, "id must be a string or number, got %s", jsonKind(id[0]))
		}
		if strings.TrimSpace(out.id) == "" {
			return bad(fields.id, "empty id")
		}
	}
	return out, nil
}

// invalidUTF8Offset returns the offset of the first invalid UTF-8 sequence.
func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// jsonSyntaxError explains why line is not valid JSON (slow path, errors only).
func jsonSyntaxError(line []byte) string {
	var v any
	err := json.Unmarshal(line, &v)
	var se *json.SyntaxError
	msg := "malformed"
	switch {
	case errors.As(err, &se):
		msg = fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	case err != nil:
		msg = err.Error()
	}
	if t := bytes.TrimSpace(line); len(t) > 0 && (t[0] == '[' || (t[0] == '{' && !bytes.HasSuffix(t, []byte("}")))) {
		msg += "; the file must hold one complete JSON object per line (JSON Lines), not a JSON array or pretty-printed JSON"
	}
	return msg
}

// jsonKind names the kind of JSON value that starts with byte c.
func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// forEachMember calls fn with the raw key (quotes included) and raw value of
// each member of the JSON object in data, in order. data must be valid JSON
// (json.Valid) holding an object; it is not checked again.
func forEachMember(data []byte, fn func(key, val []byte)) {
	i := skipSpace(data, 0) + 1 // past '{'
	for {
		i = skipSpace(data, i)
		switch data[i] {
		case '}':
			return
		case ',':
			i = skipSpace(data, i+1)
		}
		kEnd := endOfString(data, i)
		key := data[i:kEnd]
		i = skipSpace(data, kEnd) + 1 // past ':'
		i = skipSpace(data, i)
		vEnd := endOfValue(data, i)
		fn(key, data[i:vEnd])
		i = vEnd
	}
}

// endOfString returns the index just past the string starting at data[i].
func endOfString(data []byte, i int) int {
	for j := i + 1; ; j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
}

// endOfValue returns the index just past the value starting at data[i].
func endOfValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return endOfString(data, i)
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch data[j] {
			case '"':
				j = endOfString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
	default: // number, true, false, null
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// keyIs reports whether the raw JSON string key decodes to name.
func keyIs(key []byte, name string) bool {
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	return jsonString(key) == name
}

// memberNames lists (up to max) the quoted member names of the object in line.
func memberNames(line []byte, max int) []string {
	var names []string
	n := 0
	forEachMember(line, func(key, _ []byte) {
		n++
		if len(names) < max {
			names = append(names, fmt.Sprintf("%q", jsonString(key)))
		}
	})
	if len(names) == 0 {
		return []string{"none"}
	}
	if n > max {
		names = append(names, fmt.Sprintf("and %d more", n-max))
	}
	return names
}
