package datasets

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

var jsonlSeeds = []string{
	`{"text": "hello", "label": "great"}`,
	`{"text": "a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00", "label": 3}`,
	`{"text": "lone \ud800 surrogate \udc00 x", "label": -1.5e3}`,
	`{"te\u0078t": "escaped key", "label": null}`,
	`{"label": true, "text": "x"}`,
	`{"text": "dup", "text": "last wins"}`,
	`{"text": {"nested": ["}", "]"]}}`,
	`{"text": "x", "extra": [1, 2.5, -0, 1e10, true, false, null, {}, []]}`,
	`{"text": ""}`,
	`{}`,
	`[]`,
	`"text"`,
	`{"text": "a"`,
	`{"text": "a"} {}`,
	`{"text": 01}`,
	`{"text": "\x01"}`,
	"{\"text\": \"caf\xe9\"}",
	` { "text" : "spaces" } `,
	`{"text": "a", "label": 1.}`,
	`{"text": "\u12"}`,
}

// FuzzReadJSONLRow checks the JSONL row parser on arbitrary input: it never
// panics, every error is a RowError naming the file and row, it accepts
// exactly the JSON that encoding/json accepts, and it decodes the text and
// label as encoding/json does.
func FuzzReadJSONLRow(f *testing.F) {
	for _, s := range jsonlSeeds {
		f.Add([]byte(s))
	}
	fields := fieldNames{text: "text", label: "label"}
	f.Fuzz(func(t *testing.T, line []byte) {
		if got, want := jsonValid(line), json.Valid(line); got != want {
			t.Fatalf("jsonValid(%q) = %v, json.Valid says %v", line, got, want)
		}
		r, err := parseJSONLRow("in.jsonl", 7, line, fields)
		if err != nil {
			var re RowError
			if !errors.As(err, &re) || re.File != "in.jsonl" || re.Row != 7 {
				t.Fatalf("error %#v does not name the file and row", err)
			}
			if !strings.HasPrefix(err.Error(), "in.jsonl:7: ") {
				t.Fatalf("message %q does not start with file:row", err)
			}
			return
		}
		if r.row != 7 {
			t.Fatalf("row %d", r.row)
		}
		// Accepted: it must be a valid UTF-8 JSON object, decoded alike.
		var m map[string]any
		if !utf8.Valid(line) {
			t.Fatalf("accepted invalid UTF-8 %q", line)
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("accepted %q, encoding/json says %v", line, err)
		}
		if m["text"] != r.text {
			t.Fatalf("text %q, encoding/json says %q", r.text, m["text"])
		}
		switch l := m["label"].(type) {
		case string:
			if strings.TrimSpace(l) != r.label {
				t.Fatalf("label %q, encoding/json says %q", r.label, l)
			}
		case float64, nil:
		default:
			t.Fatalf("accepted label of type %T", l)
		}
	})
}

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`""`, `"plain"`, `"\""`, `"\\\/\b\f\n\r\t"`, `"\u0041\u00e9\u20ac"`, `"\ud83d\ude00"`,
		`"\ud83d"`, `"\ude00"`, `"\ud83d\u0041"`, `"\ud83dx"`, `"\ud83d\ud83d\ude00"`, `"caf\u00E9 \u00e9"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if got := jsonString([]byte(s)); got != want {
			t.Errorf("jsonString(%s) = %q, want %q", s, got, want)
		}
	}
}

func TestJSONLReaderLines(t *testing.T) {
	long := strings.Repeat("long text ", 300_000) // 3 MB, past the 1 MiB buffer
	in := "\xef\xbb\xbf{\"text\": \"bom\"}\r\n\n   \n{\"text\": \"" + long + "\"}\n{\"text\": \"no final newline\"}"
	r := newJSONLReader("x.jsonl", strings.NewReader(in), fieldNames{text: "text"})
	var rows []rawRow
	for {
		row, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if len(rows) != 3 || rows[0].text != "bom" || rows[0].row != 1 || rows[1].text != long || rows[1].row != 4 || rows[2].row != 5 || rows[2].text != "no final newline" {
		t.Errorf("rows: %d, first %+v, third %+v", len(rows), rows[0], rows[len(rows)-1])
	}
}

func TestRowErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    RowError
		want string
	}{
		{RowError{"a.jsonl", 3, "text", "empty text"}, `a.jsonl:3: field "text": empty text`},
		{RowError{"a.jsonl", 3, "", "invalid JSON: x"}, `a.jsonl:3: invalid JSON: x`},
		{RowError{"a.parquet", 0, "text", "no such column"}, `a.parquet: field "text": no such column`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := (RowErrors{{"a", 1, "", "x"}}).Error(); got != "a:1: x" {
		t.Errorf("single RowErrors: %q", got)
	}
}
