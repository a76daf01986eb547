package routes

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/routes.md")

func exampleJSON(t testing.TB) []byte {
	data, err := Example().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", FileName)
	want := Example()
	if err := want.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
	// An invalid Routes is not written, and leaves the old file and no temp file.
	bad := Example()
	bad.Model = ""
	if err := bad.Write(path); err == nil || !strings.Contains(err.Error(), "model") {
		t.Fatalf("invalid write: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want only %s", len(entries), FileName)
	}
	if _, err := Read(path); err != nil {
		t.Fatalf("old file damaged: %v", err)
	}
}

// mutate decodes the example into generic JSON, applies f and re-encodes.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	var m map[string]any
	if err := json.Unmarshal(exampleJSON(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		field string // Error.Field
		msg   string // in Error.Msg
	}{
		{"not json", []byte(`{"schema_version": 1,`), "", "invalid JSON"},
		{"array", []byte(`[1]`), "", "JSON object"},
		{"trailing", append(exampleJSON(t), []byte(`{}`)...), "", "data after"},
		{"no version", mutate(t, func(m map[string]any) { delete(m, "schema_version") }), "schema_version", "missing"},
		{"version 2", mutate(t, func(m map[string]any) { m["schema_version"] = 2 }), "schema_version", "version 2 is not supported"},
		{"version string", mutate(t, func(m map[string]any) { m["schema_version"] = "1" }), "schema_version", "not supported"},
		{"unknown top", mutate(t, func(m map[string]any) { m["modle"] = "x" }), "modle", "unknown field"},
		{"case differs", mutate(t, func(m map[string]any) { m["Model"] = m["model"]; delete(m, "model") }), "Model", "unknown field"},
		{"unknown nested", mutate(t, func(m map[string]any) { obj(m, "latency")["p99_ms"] = 3 }), "latency.p99_ms", "unknown field"},
		{"unknown in map value", mutate(t, func(m map[string]any) { obj(obj(m, "quality"), "accuracy")["fp16"] = 1 }), "quality.accuracy.fp16", "unknown field"},
		{"missing nested", mutate(t, func(m map[string]any) { delete(obj(m, "latency"), "p50_ms") }), "latency.p50_ms", "missing"},
		{"null required", mutate(t, func(m map[string]any) { m["confidence_threshold"] = nil }), "confidence_threshold", "missing"},
		{"wrong type", mutate(t, func(m map[string]any) { obj(m, "latency")["p95_ms"] = "61" }), "latency.p95_ms", "want float64, got JSON string"},
		{"wrong type list", mutate(t, func(m map[string]any) { m["complexity_band"] = []any{1, "2"} }), "complexity_band", "want int"},
		{"empty model", mutate(t, func(m map[string]any) { m["model"] = " " }), "model", "empty"},
		{"task", mutate(t, func(m map[string]any) { m["task"] = "regression" }), "task", "not one of"},
		{"one label", mutate(t, func(m map[string]any) { m["labels"] = []any{"great"} }), "labels", "at least two"},
		{"repeated label", mutate(t, func(m map[string]any) { m["labels"] = []any{"great", "other", "great"} }), "labels[2]", "repeats labels[0]"},
		{"band range", mutate(t, func(m map[string]any) { m["complexity_band"] = []any{1, 6} }), "complexity_band[1]", "not in 1-5"},
		{"band repeat", mutate(t, func(m map[string]any) { m["complexity_band"] = []any{2, 2} }), "complexity_band[1]", "twice"},
		{"band empty", mutate(t, func(m map[string]any) { m["complexity_band"] = []any{} }), "complexity_band", "empty"},
		{"threshold", mutate(t, func(m map[string]any) { m["confidence_threshold"] = 1.5 }), "confidence_threshold", "not in"},
		{"target precision", mutate(t, func(m map[string]any) { obj(m, "calibration")["target_precision"] = 0 }), "calibration.target_precision", "not in (0,1]"},
		{"coverage", mutate(t, func(m map[string]any) { obj(m, "calibration")["coverage"] = -0.1 }), "calibration.coverage", "not in"},
		{"quality empty", mutate(t, func(m map[string]any) { m["quality"] = map[string]any{} }), "quality", "empty"},
		{"negative latency", mutate(t, func(m map[string]any) { obj(m, "latency")["p50_ms"] = -1 }), "latency.p50_ms", "finite number >= 0"},
		{"p95 below p50", mutate(t, func(m map[string]any) { obj(m, "latency")["p95_ms"] = 1 }), "latency.p95_ms", "below p50_ms"},
		{"price", mutate(t, func(m map[string]any) { obj(obj(m, "prices"), "teacher")["output_per_mtok"] = -2 }), "prices.teacher.output_per_mtok", ">= 0"},
		{"template", mutate(t, func(m map[string]any) { obj(m, "prompt")["template"] = "{instruction}" }), "prompt.template", "{text}"},
		{"parser mode", mutate(t, func(m map[string]any) { obj(m, "parser")["mode"] = "json" }), "parser.mode", "not one of"},
		{"parser labels", mutate(t, func(m map[string]any) { obj(m, "parser")["labels"] = []any{"other", "great"} }), "parser.labels", "differ"},
		{"max tokens", mutate(t, func(m map[string]any) { obj(m, "parser")["max_tokens"] = 0 }), "parser.max_tokens", "below 1"},
		{"empty stop", mutate(t, func(m map[string]any) { obj(m, "parser")["stop"] = []any{""} }), "parser.stop[0]", "empty"},
		{"artifact", mutate(t, func(m map[string]any) { obj(m, "artifacts")["model"] = "" }), "artifacts.model", "empty"},
		{"generation with labels", mutate(t, func(m map[string]any) {
			m["task"] = "generation"
			obj(m, "parser")["mode"] = "text"
			obj(m, "parser")["labels"] = nil
		}), "labels", "no label set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *routes.Error", err)
			}
			if re.Field != tc.field || !strings.Contains(re.Msg, tc.msg) {
				t.Fatalf("got field %q msg %q, want field %q msg containing %q", re.Field, re.Msg, tc.field, tc.msg)
			}
		})
	}
}

func TestParseOptional(t *testing.T) {
	// Optional keys may be absent or null; a generation task reads as text.
	data := mutate(t, func(m map[string]any) {
		m["task"] = "generation"
		delete(m, "labels")
		m["confidence_threshold"] = 0
		p := obj(m, "parser")
		p["mode"] = "text"
		delete(p, "labels")
		p["stop"] = nil
		delete(obj(m, "prompt"), "system")
		delete(obj(obj(m, "quality"), "accuracy"), "int4")
		delete(obj(m, "artifacts"), "adapter")
	})
	r, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Quality["accuracy"].Int4 != nil || r.Labels != nil {
		t.Fatalf("optional fields: %+v", r)
	}
	if got, ok := r.ParseAnswer("  {\"a\": 1}\n"); !ok || got != `{"a": 1}` {
		t.Fatalf("text answer %q %v", got, ok)
	}
}

func TestRender(t *testing.T) {
	// The case of distill's TestPromptMessagesAndKeys, plus braces in the input.
	r := &Routes{Labels: []string{"a", "b"}, Prompt: Prompt{Template: "{instruction}\n\nReview: {text}", Instruction: "Pick one of {labels}."}}
	for text, want := range map[string]string{
		"Nice  tea":           "Pick one of a, b.\n\nReview: Nice  tea",
		"good":                "Pick one of a, b.\n\nReview: good",
		"say {labels} {text}": "Pick one of a, b.\n\nReview: say {labels} {text}",
	} {
		if got := r.Render(text); got != want {
			t.Errorf("Render(%q) = %q, want %q", text, got, want)
		}
	}
	r.Prompt.Template = "[{labels}] {instruction}|{text}|{text}"
	if got, want := r.Render("x"), "[a, b] Pick one of a, b.|x|x"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	ex := Example()
	if got, want := ex.Render("Tasty."), "Does this review give the product five stars? Answer great or other.\n\nReview: Tasty.\nAnswer:"; got != want {
		t.Errorf("example: got %q, want %q", got, want)
	}
}

func TestParseLabel(t *testing.T) {
	labels := []string{"great", "other"}
	// The cases of distill's TestLabelDist, then more.
	for answer, want := range map[string]string{
		"great": "great", " Other\n": "other", "great!": "great", "otherwise": "other", "meh": "",
		"GREAT.": "great", "": "", "...": "", "\"great\"": "great", "great, because": "great", "not great": "",
	} {
		if got := ParseLabel(answer, labels); got != want {
			t.Errorf("ParseLabel(%q) = %q, want %q", answer, got, want)
		}
	}
	// Longest label first: "positive-ish" must not read as "positive".
	long := []string{"positive", "positive-ish", "neg"}
	for answer, want := range map[string]string{"positive-ish!": "positive-ish", "positive": "positive", "positively": "positive", "negative": "neg"} {
		if got := ParseLabel(answer, long); got != want {
			t.Errorf("ParseLabel(%q, %q) = %q, want %q", answer, long, got, want)
		}
	}
	ex := Example()
	if l, ok := ex.ParseAnswer(" Great!\n"); !ok || l != "great" {
		t.Errorf("ParseAnswer: %q %v", l, ok)
	}
	if l, ok := ex.ParseAnswer("I cannot tell"); ok || l != "" {
		t.Errorf("ParseAnswer unparsed: %q %v", l, ok)
	}
}

func TestReference(t *testing.T) {
	path := filepath.Join("..", "docs", "routes.md")
	got := Reference()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./routes -run TestReference -update)", err)
	}
	if string(want) != got {
		t.Fatalf("docs/routes.md is stale: run go test ./routes -run TestReference -update")
	}
	// Every JSON key path is documented, and the example parses.
	var paths []string
	var walk func(reflect.Type, string)
	walk = func(st reflect.Type, prefix string) {
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			name := jsonName(f)
			if name == "" {
				continue
			}
			if f.Tag.Get("doc") == "" {
				t.Errorf("%s%s has no doc tag", prefix, name)
			}
			p := prefix + name
			paths = append(paths, p)
			switch ft := f.Type; ft.Kind() {
			case reflect.Struct:
				walk(ft, p+".")
			case reflect.Map:
				walk(ft.Elem(), p+".<metric>.")
			}
		}
	}
	walk(typeOf[Routes](), "")
	for _, p := range paths {
		if !strings.Contains(got, "| `"+p+"` |") {
			t.Errorf("field %s is not in docs/routes.md", p)
		}
	}
	i := strings.Index(got, "```json\n")
	j := strings.LastIndex(got, "```")
	if _, err := Parse([]byte(got[i+len("```json\n") : j])); err != nil {
		t.Errorf("the example in docs/routes.md does not parse: %v", err)
	}
}

// FuzzParse: Parse never panics, and what it accepts survives Marshal and
// Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add(exampleJSON(f))
	f.Add([]byte(`{"schema_version":1}`))
	f.Add([]byte(`{"schema_version":1,"model":"m","quality":{"a":{"student":1,"teacher":1,"int4":null}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"schema_version":1e0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *routes.Error", err)
			}
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("accepted but cannot marshal: %v", err)
		}
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("marshalled form rejected: %v\n%s", err, out)
		}
		out2, _ := r2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed:\n%s\n%s", out, out2)
		}
	})
}

func TestCutText(t *testing.T) {
	tests := []struct {
		text string
		n    int
		want string
	}{
		{"short text", 0, "short text"},
		{"short text", 10, "short text"},
		{"the quick brown fox", 12, "the quick"},    // ends at a word boundary
		{"abcdefghijklmnop", 8, "abcdefgh"},         // no space in the last fifth: a hard cut
		{"héllo wörld and more", 11, "héllo wörld"}, // runes, not bytes
		{"one two  three", 9, "one two"},            // trailing space trimmed
	}
	for _, tc := range tests {
		if got := CutText(tc.text, tc.n); got != tc.want {
			t.Errorf("CutText(%q, %d) = %q, want %q", tc.text, tc.n, got, tc.want)
		}
	}
}
