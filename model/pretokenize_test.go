package model

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// pretokSplitWith splits s with the scanner of a known pattern.
func pretokSplitWith(pattern, s string) []string {
	sc := pretokKnownScanner(pattern)
	var out []string
	for i := 0; i < len(s); {
		e := sc(s, i)
		out = append(out, s[i:e])
		i = e
	}
	return out
}

func TestPretokScanners(t *testing.T) {
	cases := []struct {
		pattern, text string
		want          []string
	}{
		// \s+(?!\S): the last space of a run joins the next word.
		{pretokPatternQwen2, "a   b", []string{"a", "  ", " b"}},
		{pretokPatternQwen2, "a b", []string{"a", " b"}},
		{pretokPatternQwen2, "a   ", []string{"a", "   "}},
		{pretokPatternQwen2, "   a", []string{"  ", " a"}},
		{pretokPatternQwen2, "a \t1", []string{"a", " ", "\t", "1"}},
		{pretokPatternQwen2, "a\u3000\u3000b", []string{"a", "\u3000", "\u3000b"}},
		// \s*[\r\n]+ ends at the last line break of a white-space run.
		{pretokPatternQwen2, "a \n\n b", []string{"a", " \n\n", " b"}},
		{pretokPatternQwen2, "a\r\n  \nb", []string{"a", "\r\n  \n", "b"}},
		{pretokPatternQwen2, "x\n", []string{"x", "\n"}},
		// Digits: one at a time (Qwen), up to three (Llama-3).
		{pretokPatternQwen2, "12345", []string{"1", "2", "3", "4", "5"}},
		{pretokPatternLlama3, "1234567", []string{"123", "456", "7"}},
		{pretokPatternLlama3, "a12b", []string{"a", "12", "b"}},
		// Contractions, case-insensitive; other apostrophes join letters.
		{pretokPatternQwen2, "I'LL we're it’s", []string{"I", "'LL", " we", "'re", " it", "’s"}},
		{pretokPatternQwen2, "'sand", []string{"'s", "and"}},
		{pretokPatternQwen2, "x'yz", []string{"x", "'yz"}},
		// One non-letter prefix before letters; punctuation runs take line breaks.
		{pretokPatternQwen2, "(hello) world!!\n\nok", []string{"(hello", ")", " world", "!!\n\n", "ok"}},
		{pretokPatternQwen2, " ...", []string{" ..."}},
		{pretokPatternQwen2, "\nabc", []string{"\n", "abc"}},
		{pretokPatternQwen2, "\tabc", []string{"\tabc"}},
		// GPT-2: case-sensitive contractions, " ?" before each class.
		{pretokPatternGPT2, "I'LL it's 123 abc!!", []string{"I", "'", "LL", " it", "'s", " 123", " abc", "!!"}},
		{pretokPatternGPT2, "a  b\n", []string{"a", " ", " b", "\n"}},
		// Invalid UTF-8 is "other", byte by byte.
		{pretokPatternQwen2, "a\xffb", []string{"a", "\xffb"}},
		{pretokPatternQwen2, "\xff\xfe!", []string{"\xff\xfe!"}},
	}
	for _, c := range cases {
		if got := pretokSplitWith(c.pattern, c.text); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.text, got, c.want)
		}
	}
}

func TestPretokIsSpace(t *testing.T) {
	// Unicode White_Space, as Oniguruma and Rust's regex mean \s.
	for _, r := range []rune{' ', '\t', '\n', '\v', '\f', '\r', 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} {
		if !pretokIsSpace(r) {
			t.Errorf("U+%04X should be white space", r)
		}
	}
	for _, r := range []rune{'a', 0x1C, 0x200B, 0xFEFF, 0x180E} {
		if pretokIsSpace(r) {
			t.Errorf("U+%04X should not be white space", r)
		}
	}
}

func TestPretokSplitBehaviors(t *testing.T) {
	s := "a--b-c-"
	ms := pretokLiteral("-").matches(s)
	for b, want := range map[pretokBehavior][]string{
		pretokIsolated:           {"a", "-", "-", "b", "-", "c", "-"},
		pretokRemoved:            {"a", "b", "c"},
		pretokMergedWithPrevious: {"a-", "-", "b-", "c-"},
		pretokMergedWithNext:     {"a", "-", "-b", "-c", "-"},
		pretokContiguous:         {"a", "--", "b", "-", "c", "-"},
	} {
		if got := pretokSplitBy(nil, s, ms, b, false); !slices.Equal(got, want) {
			t.Errorf("behavior %d: got %q, want %q", b, got, want)
		}
	}
	// invert: the pattern describes the words; the rest is the delimiter.
	words := pretokLiteral("ab").matches("xabyab")
	if got := pretokSplitBy(nil, "xabyab", words, pretokRemoved, true); !slices.Equal(got, []string{"ab", "ab"}) {
		t.Errorf("invert removed: %q", got)
	}
}

func TestPretokRegexTranslation(t *testing.T) {
	// Go's \s is ASCII; tokenizer.json regexes mean Unicode white space.
	m, err := pretokMatcherFor(pretokPattern{Regex: ptr(`\s+|[^\s\p{L}]+`)})
	if err != nil {
		t.Fatal(err)
	}
	got := pretokSplitBy(nil, "a\u3000\u00a0b--c", m.matches("a\u3000\u00a0b--c"), pretokIsolated, false)
	if want := []string{"a", "\u3000\u00a0", "b", "--", "c"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// An unknown pattern needing look-ahead fails, naming the pattern.
	const bad = `\p{L}+(?=\d)|\s+`
	_, err = pretokMatcherFor(pretokPattern{Regex: ptr(bad)})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("look-ahead pattern: err = %v", err)
	}
}

func TestPretokDigitsAndMetaspace(t *testing.T) {
	d := pretokDigits{individual: true}.apply([]string{"ab12c3"}, true)
	if want := []string{"ab", "1", "2", "c", "3"}; !slices.Equal(d, want) {
		t.Errorf("individual digits: %q", d)
	}
	d = pretokDigits{}.apply([]string{"ab12c3"}, true)
	if want := []string{"ab", "12", "c", "3"}; !slices.Equal(d, want) {
		t.Errorf("digit runs: %q", d)
	}
	var c pretokConfig
	if err := json.Unmarshal([]byte(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}`), &c); err != nil {
		t.Fatal(err)
	}
	ms, err := pretokMetaspaceOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := ms.apply([]string{"hello big world"}, true); !slices.Equal(got, []string{"▁hello", "▁big", "▁world"}) {
		t.Errorf("metaspace first: %q", got)
	}
	if got := ms.apply([]string{"hello world"}, false); !slices.Equal(got, []string{"hello", "▁world"}) {
		t.Errorf("metaspace not first: %q", got)
	}
}

func TestPretokByteLevelRegex(t *testing.T) {
	// ByteLevel with use_regex (GPT-2 style, as SmolLM2 after Digits).
	steps, byteLevel, err := pretokBuild(json.RawMessage(`{"type":"Sequence","pretokenizers":[
		{"type":"Digits","individual_digits":true},
		{"type":"ByteLevel","add_prefix_space":true,"use_regex":true}]}`))
	if err != nil || !byteLevel {
		t.Fatal(err, byteLevel)
	}
	pieces := []string{"hi there 42"}
	for _, s := range steps {
		pieces = s.apply(pieces, true)
	}
	if want := []string{" hi", " there", " ", " 4", " 2"}; !slices.Equal(pieces, want) {
		t.Errorf("got %q, want %q", pieces, want)
	}
}

func ptr[T any](v T) *T { return &v }
