package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestBPEMergeOrder(t *testing.T) {
	// "a a" outranks "b c"; equal ranks go leftmost first, so "aaa" is
	// "aa"+"a", and "aab" takes "aa" before "ab" could fire.
	tk := tokTinyParse(t, tokTinyByteLevel([][2]string{{"a", "a"}, {"a", "b"}, {"aa", "b"}, {"b", "c"}, {"ab", "c"}}), nil)
	for text, want := range map[string][]string{
		"aaa":   {"aa", "a"},
		"aaaa":  {"aa", "aa"},
		"aab":   {"aab"},
		"abc":   {"abc"},
		"bcabc": {"bc", "abc"},
		"x":     {"x"},
	} {
		if got := tokTinyTokens(tk, text); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
	}
}

func TestBPEMergesBothForms(t *testing.T) {
	merges := [][2]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}}
	arrays := tokTinyByteLevel(merges)
	strs := tokTinyByteLevel(merges)
	var flat []any
	for _, m := range merges {
		flat = append(flat, m[0]+" "+m[1])
	}
	tokTinyModel(strs)["merges"] = flat
	a, b := tokTinyParse(t, arrays, nil), tokTinyParse(t, strs, nil)
	for _, text := range []string{"hello world", "hellhello", " w"} {
		if ga, gb := a.Encode(text), b.Encode(text); !slices.Equal(ga, gb) {
			t.Errorf("%q: array merges give %v, string merges %v", text, ga, gb)
		}
	}
	if got := tokTinyTokens(a, "hello world"); !slices.Equal(got, []string{"hello", "Ġw", "o", "r", "l", "d"}) {
		t.Errorf("hello world: %q", got)
	}
}

func TestBPEIgnoreMerges(t *testing.T) {
	// "abc" is in the vocab but no merge sequence reaches it.
	tj := tokTinyByteLevel([][2]string{{"b", "c"}})
	tokTinyModel(tj)["vocab"].(map[string]any)["abc"] = 500
	plain := tokTinyParse(t, tj, nil)
	if got := tokTinyTokens(plain, "abc"); !slices.Equal(got, []string{"a", "bc"}) {
		t.Errorf("without ignore_merges: %q", got)
	}
	tokTinyModel(tj)["ignore_merges"] = true
	ignoring := tokTinyParse(t, tj, nil)
	if got := tokTinyTokens(ignoring, "abc"); !slices.Equal(got, []string{"abc"}) {
		t.Errorf("with ignore_merges: %q", got)
	}
	if got := tokTinyTokens(ignoring, "abcd"); !slices.Equal(got, []string{"a", "bc", "d"}) {
		t.Errorf("with ignore_merges, word not in vocab: %q", got)
	}
}

// tokTinySentencePiece is a Llama-2 style tokenizer: ▁ for spaces, no
// pre-tokenizer, byte fallback.
func tokTinySentencePiece() map[string]any {
	vocab := map[string]any{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	next := 300
	for _, s := range []string{"▁", "h", "i", "e", "l", "o", "▁h", "▁hi", "ll", "▁he", "▁hell", "▁hello", "é"} {
		vocab[s] = next
		next++
	}
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
			map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
			map[string]any{"id": 2, "content": "</s>", "special": true, "normalized": false},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "vocab": vocab, "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
			"merges": []any{"▁ h", "▁h i", "l l", "▁h e", "▁he ll", "▁hell o"},
		},
	}
}

func TestBPEByteFallback(t *testing.T) {
	tk := tokTinyParse(t, tokTinySentencePiece(), nil)
	for text, want := range map[string][]string{
		"hi":       {"▁hi"},
		"hello hi": {"▁hello", "▁hi"},
		"hé":       {"▁h", "é"},
		"h中":       {"▁h", "<0xE4>", "<0xB8>", "<0xAD>"},
		"<s>hi":    {"<s>", "▁hi"},
	} {
		got := tokTinyTokens(tk, text)
		if !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
		if dec := tk.DecodeSkipSpecial(tk.Encode(text)); dec != strings.TrimPrefix(text, "<s>") {
			t.Errorf("%q decodes to %q", text, dec)
		}
	}
	if got := tk.Decode(tk.Encode("hello hi")); got != "hello hi" {
		t.Errorf("decode strips one leading space: %q", got)
	}
	if got := tk.TokenText(tk.Encode("hi")[0]); got != " hi" {
		t.Errorf("TokenText keeps the space: %q", got)
	}

	// Without byte fallback, unknown characters become one fused <unk>.
	tj := tokTinySentencePiece()
	tokTinyModel(tj)["byte_fallback"] = false
	tk = tokTinyParse(t, tj, nil)
	if got := tokTinyTokens(tk, "h中中"); !slices.Equal(got, []string{"▁h", "<unk>"}) {
		t.Errorf("unk: %q", got)
	}
}

// TestBPEHeapMatchesScan checks that the heap merge (long words) and the
// scan merge (short words) agree, on the real Qwen3 merges.
func TestBPEHeapMatchesScan(t *testing.T) {
	tk := tokTestTokenizer(t, "qwen3")
	m := tk.model
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "e", "t", "h", "in", "Ġ", "the", "é", "😀", "中", "ing", "1", "!", " "}
	for n := 0; n < 2000; n++ {
		var b strings.Builder
		for b.Len() < bpeSmallWord {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		word := b.String()[:rng.IntN(bpeSmallWord)+1]
		var s1 []bpeSymbol
		for i := 0; i < len(word); i++ {
			s1 = m.appendSymbol(s1, m.byteIDs[word[i]], word[i:i+1])
		}
		s2 := slices.Clone(s1)
		bpeMergeSmall(s1, m.merges)
		bpeMergeHeap(s2, m.merges)
		if !slices.Equal(s1, s2) {
			t.Fatalf("%q: scan and heap merges differ", word)
		}
	}
	// A long word goes through the heap and still round-trips.
	long := strings.Repeat("abcé😀 ", 50)
	if got := tk.Decode(tk.model.encodeWord(nil, long)); got != long {
		t.Errorf("long word round trip: %q", got)
	}
}

func TestBPEParseVocabAndMerges(t *testing.T) {
	v, err := tokParseVocab([]byte(` { "a" : 0, "\u0120b":1,"q\"":2, "é":3 } `))
	if err != nil || len(v) != 4 || v["Ġb"] != 1 || v[`q"`] != 2 || v["é"] != 3 {
		t.Errorf("vocab: %v, %v", v, err)
	}
	for _, raw := range []string{`["a b", "\u0120 c"]`, `[["a","b"],["Ġ","c"]]`} {
		m, err := tokParseMerges([]byte(raw))
		if err != nil || !slices.Equal(m, [][2]string{{"a", "b"}, {"Ġ", "c"}}) {
			t.Errorf("%s: %q, %v", raw, m, err)
		}
	}
	for _, raw := range []string{`["ab"]`, `[["a"]]`, `["a b"`, `{}`} {
		if _, err := tokParseMerges([]byte(raw)); err == nil {
			t.Errorf("%s: no error", raw)
		}
	}
	if m, err := tokParseMerges([]byte(`[]`)); err != nil || len(m) != 0 {
		t.Errorf("empty merges: %v %v", m, err)
	}
}

func TestBPEMetaspace(t *testing.T) {
	// Mistral v0.3 style: no normaliser, Metaspace pre-tokenizer and decoder.
	tj := tokTinySentencePiece()
	tj["normalizer"] = nil
	tj["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	tj["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	tk := tokTinyParse(t, tj, nil)
	for text, want := range map[string][]string{
		"hello hi": {"▁hello", "▁hi"},
		"<s>hi":    {"<s>", "h", "i"}, // not at the start: nothing prepended
	} {
		if got := tokTinyTokens(tk, text); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
		if got := tk.Decode(tk.Encode(text)); got != text {
			t.Errorf("%q decodes to %q", text, got)
		}
	}
}
