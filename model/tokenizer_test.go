package model

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestTokenizerQwen3API(t *testing.T) {
	tk := tokTestTokenizer(t, "qwen3")
	if n := tk.VocabSize(); n != 151669 {
		t.Errorf("VocabSize = %d, want 151669", n)
	}
	if id, ok := tk.BOS(); ok {
		t.Errorf("Qwen3 has no BOS, got %d", id)
	}
	// eos_token <|im_end|> first, then <|endoftext|>.
	if eos := tk.EOS(); !slices.Equal(eos, []int{151645, 151643}) {
		t.Errorf("EOS = %v", eos)
	}
	imEnd, _ := tk.ID("<|im_end|>")
	think, _ := tk.ID("<think>")
	if !tk.IsSpecial(imEnd) || tk.IsSpecial(think) || tk.IsSpecial(-1) || tk.IsSpecial(1<<30) {
		t.Errorf("IsSpecial: <|im_end|> %v, <think> %v", tk.IsSpecial(imEnd), tk.IsSpecial(think))
	}
	if id, ok := tk.ID("Ġhello"); !ok || tk.TokenText(id) != " hello" {
		t.Errorf(`ID("Ġhello") = %d, %v (text %q)`, id, ok, tk.TokenText(id))
	}
	if _, ok := tk.ID(" hello"); ok {
		t.Error(`ID takes token strings, not text: " hello" should not be found`)
	}
	ids := tk.Encode("<think>\nhm\n</think>\n\nHi<|im_end|>")
	if ids[0] != think || ids[len(ids)-1] != imEnd {
		t.Errorf("added tokens not matched: %v", ids)
	}
	if got := tk.DecodeSkipSpecial(ids); got != "<think>\nhm\n</think>\n\nHi" {
		t.Errorf("DecodeSkipSpecial = %q (only special tokens are skipped)", got)
	}
	if got := tk.Decode(append(ids, -5, 1<<30)); got != "<think>\nhm\n</think>\n\nHi<|im_end|>" {
		t.Errorf("Decode skips unknown ids: %q", got)
	}
	if tk.ChatTemplate() != "chatml" {
		t.Errorf("ChatTemplate = %q", tk.ChatTemplate())
	}
}

func TestTokenizerLlama3API(t *testing.T) {
	tk := tokTestTokenizer(t, "llama3")
	if n := tk.VocabSize(); n != 128256 {
		t.Errorf("VocabSize = %d, want 128256", n)
	}
	if id, ok := tk.BOS(); !ok || id != 128000 {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	// eos_token <|end_of_text|>, then <|eot_id|>.
	if eos := tk.EOS(); !slices.Equal(eos, []int{128001, 128009}) {
		t.Errorf("EOS = %v", eos)
	}
	if tk.ChatTemplate() != "llama3" {
		t.Errorf("ChatTemplate = %q", tk.ChatTemplate())
	}
	// ignore_merges: a word in the vocab is one token.
	if ids := tk.Encode(" hello"); len(ids) != 1 {
		t.Errorf(`" hello" = %v`, ids)
	}
}

func TestTokenizerPartialUTF8(t *testing.T) {
	tk := tokTestTokenizer(t, "qwen3")
	text := "👨‍👩‍👧 ok 𝔥"
	ids := tk.Encode(text)
	partial := 0
	var joined []byte
	for _, id := range ids {
		b := tk.TokenBytes(id)
		if string(b) != tk.TokenText(id) {
			t.Fatalf("TokenBytes and TokenText differ for %d", id)
		}
		if !utf8.Valid(b) {
			partial++
		}
		joined = append(joined, b...)
	}
	if partial == 0 {
		t.Fatalf("expected some tokens of %q to be partial UTF-8: %v", text, ids)
	}
	if string(joined) != text || tk.Decode(ids) != text {
		t.Errorf("joined token bytes %q, Decode %q", joined, tk.Decode(ids))
	}
	// A cut in the middle of a character decodes to its raw bytes.
	cut := tk.Decode(ids[:1])
	if !strings.HasPrefix(text, cut) {
		t.Errorf("Decode of the first token %q is not a prefix", cut)
	}
	// TokenBytes returns a copy.
	b := tk.TokenBytes(ids[0])
	b[0] ^= 0xFF
	if tk.TokenBytes(ids[0])[0] == b[0] {
		t.Error("TokenBytes exposes internal storage")
	}
}

func TestTokenizerLoadPaths(t *testing.T) {
	dir, err := tokTestDir("qwen3")
	if err != nil {
		t.Skip(err)
	}
	a := tokTestTokenizer(t, "qwen3")
	b, err := LoadTokenizer(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if a.ChatTemplate() != b.ChatTemplate() || !slices.Equal(a.EOS(), b.EOS()) {
		t.Error("loading the folder and the file differ")
	}
	// Without tokenizer_config.json: no chat template text, so the family
	// comes from the added tokens; EOS from the family's tokens.
	tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseTokenizer(tj, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ChatTemplate() != "chatml" || !slices.Equal(c.EOS(), []int{151645, 151643}) {
		t.Errorf("no config: template %q, EOS %v", c.ChatTemplate(), c.EOS())
	}
	if _, err := LoadTokenizer(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

func TestTokenizerParseErrors(t *testing.T) {
	bad := func(name string, change func(map[string]any), want string) {
		tj := tokTinyByteLevel(nil)
		change(tj)
		_, err := tokTinyTry(tj, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, want)
		}
	}
	bad("model", func(tj map[string]any) { tokTinyModel(tj)["type"] = "WordPiece" }, "WordPiece")
	bad("normalizer", func(tj map[string]any) { tj["normalizer"] = map[string]any{"type": "BertNormalizer"} }, "BertNormalizer")
	bad("pre-tokenizer", func(tj map[string]any) { tj["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }, "Whitespace")
	bad("decoder", func(tj map[string]any) { tj["decoder"] = map[string]any{"type": "WordPiece"} }, "WordPiece")
	bad("look-ahead", func(tj map[string]any) {
		tj["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `a(?!b)`}, "behavior": "Isolated"}
	}, "a(?!b)")
	if _, err := ParseTokenizer([]byte("{"), nil); err == nil {
		t.Error("truncated JSON parsed")
	}
	if _, err := ParseTokenizer([]byte(`{"model":{"type":"BPE","vocab":{},"merges":[]}}`), []byte("[")); err == nil {
		t.Error("bad config parsed")
	}
}

func TestTokenizerAddedTokenOptions(t *testing.T) {
	tj := tokTinyByteLevel(nil,
		map[string]any{"content": "<L>", "lstrip": true},
		map[string]any{"content": "<R>", "rstrip": true},
		map[string]any{"content": "tok", "single_word": true, "special": false},
		map[string]any{"content": "<long>"},
		map[string]any{"content": "<lo"},
		map[string]any{"content": "CAFÉ", "normalized": true, "special": false},
	)
	tj["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "NFC"}, map[string]any{"type": "Lowercase"},
	}}
	tk := tokTinyParse(t, tj, nil)
	for text, want := range map[string][]string{
		"a  <L>b":     {"a", "<L>", "b"},
		"a<R>  b":     {"a", "<R>", "b"},
		"tok tokx":    {"tok", "Ġ", "t", "o", "k", "x"},
		"x<long><lo>": {"x", "<long>", "<lo", ">"},
		"Cafe\u0301!": {"CAFÉ", "!"},
	} {
		if got := tokTinyTokens(tk, text); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
	}
	// Normalisation applies to text outside non-normalised added tokens only.
	if got := tokTinyTokens(tk, "A<L>B"); !slices.Equal(got, []string{"a", "<L>", "b"}) {
		t.Errorf("lowercase around added tokens: %q", got)
	}
}

func TestTokenizerConcurrentEncode(t *testing.T) {
	tk := tokTestTokenizer(t, "qwen3")
	texts := []string{"The cookies arrived stale; I want a refund!", "中文测试：我喜欢这个产品。", "  spaces   and\n\nlines  "}
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tk.Encode(s)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for n := 0; n < 200; n++ {
				i := (g + n) % len(texts)
				if got := tk.Encode(texts[i]); !slices.Equal(got, want[i]) {
					t.Errorf("concurrent encode of %q differs", texts[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
