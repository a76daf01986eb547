package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/pipeline"
)

// tokenizeTestTokenizer loads shared/tokenizers/qwen3 (found above the
// package folder, as in CI), or skips.
func tokenizeTestTokenizer(t *testing.T) *model.Tokenizer {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "shared", "tokenizers", "qwen3")
		if _, err := os.Stat(filepath.Join(p, "tokenizer.json")); err == nil {
			tk, err := model.LoadTokenizer(p)
			if err != nil {
				t.Fatal(err)
			}
			return tk
		}
		if filepath.Dir(dir) == dir {
			t.Skip("no shared/tokenizers/qwen3 above the package")
		}
		dir = filepath.Dir(dir)
	}
}

func TestTokenizeStream(t *testing.T) {
	tk := tokenizeTestTokenizer(t)
	in := `"The cookies arrived stale; I want a refund!"` + "\n\n" + `"<|im_start|>user\nhi<|im_end|>"` + "\n" + `""`
	var out bytes.Buffer
	if err := tokenizeStream(tk, strings.NewReader(in), &out, false, false); err != nil {
		t.Fatal(err)
	}
	want := "[785,8279,11465,50351,26,358,1366,264,20965,0]\n[151644,872,198,6023,151645]\n[]\n"
	if out.String() != want {
		t.Fatalf("encode:\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	if err := tokenizeStream(tk, strings.NewReader("[151644,872,198,6023,151645]\n[]\n"), &out, true, false); err != nil {
		t.Fatal(err)
	}
	if want := "\"<|im_start|>user\\nhi<|im_end|>\"\n\"\"\n"; out.String() != want {
		t.Fatalf("decode: %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := tokenizeStream(tk, strings.NewReader("[151644,872,198,6023,151645]"), &out, true, true); err != nil {
		t.Fatal(err)
	}
	if want := "\"user\\nhi\"\n"; out.String() != want {
		t.Fatalf("decode --skip-special: %q, want %q", out.String(), want)
	}

	// Bad lines are usage errors naming the line; earlier answers are kept.
	for _, c := range []struct {
		in     string
		decode bool
		line   string
	}{
		{"\"ok\"\nnot json\n", false, "line 2"},
		{"[1,2]\n", false, "line 1"},
		{"\"text\"\n", true, "line 1"},
		{"[1]\n[-1]\n", true, "line 2"},
		{"[999999999]\n", true, "line 1"},
	} {
		out.Reset()
		err := tokenizeStream(tk, strings.NewReader(c.in), &out, c.decode, false)
		if err == nil || !strings.Contains(err.Error(), c.line) || !errors.Is(err, pipeline.ErrInvalidInput) {
			t.Errorf("%q: err = %v, want a usage error naming %s", c.in, err, c.line)
		}
	}
}
