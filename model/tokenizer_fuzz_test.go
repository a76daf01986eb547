package model

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzEncode checks that Qwen3 encoding never panics, gives ids in range,
// and decodes back to the text in NFC form (invalid UTF-8 included: its
// bytes pass through NFC and byte-level BPE unchanged).
func FuzzEncode(f *testing.F) {
	for _, s := range tokFuzzSeeds {
		f.Add(s)
	}
	qwen := tokTestTokenizer(f, "qwen3")
	f.Fuzz(func(t *testing.T, s string) {
		ids := qwen.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= qwen.VocabSize() {
				t.Fatalf("id %d out of range", id)
			}
		}
		if got, want := qwen.Decode(ids), tokFuzzNFC(qwen, s); got != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", s, got, want)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "<|") && qwen.Decode(ids) != norm.NFC.String(s) {
			t.Errorf("Decode(Encode(%q)) is not NFC(s)", s)
		}
	})
}

var tokFuzzSeeds = []string{
	"", "a", " ", "   leading and trailing   ", "tabs\tand\r\nnewlines\n\n\n",
	"I've tried; they're GREAT!!! 1234567", "café e\u0301 ﬁ", "中文测试：我喜欢。", "👨‍👩‍👧 🇺🇸",
	"<|im_start|>user\nhi<|im_end|>", "<|eot_id|><think>x</think>", "\xff\xfe bad \xc3", "a\u0085b\ufeffc",
	"\u0301\u0301 leading marks", "<|im_end|>\u0338",
}

// TestTokenizerRoundTripBytes: Llama-3 has no normaliser, so any bytes,
// invalid UTF-8 included, come back exactly.
func TestTokenizerRoundTripBytes(t *testing.T) {
	tk := tokTestTokenizer(t, "llama3")
	for _, s := range append(tokFuzzSeeds, "\x80\x80", "\xf0\x9f\x98", "x\xc3(", strings.Repeat("\xff", 300)) {
		if got := tk.Decode(tk.Encode(s)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

// tokFuzzNFC is what Qwen3 must give back: NFC applied to the text between
// added tokens (the normaliser never sees the added tokens, so a combining
// mark right after one stays as it is).
func tokFuzzNFC(tk *Tokenizer, s string) string {
	var b strings.Builder
	for _, seg := range tk.rawTrie.split(s, tk.added, nil) {
		if seg.tok >= 0 {
			b.WriteString(seg.text)
		} else {
			b.WriteString(norm.NFC.String(seg.text))
		}
	}
	return b.String()
}
