package model

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// bpeTrainFineFoods reads the text of every vendored Fine Foods review:
// train then test.
func bpeTrainFineFoods(t testing.TB) (train, test []string) {
	t.Helper()
	read := func(name string) []string {
		f, err := os.Open(filepath.Join("..", "data", "fine-foods", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var row struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil || row.Text == nil {
				t.Fatalf("%s line %d: no text (%v)", name, len(out)+1, err)
			}
			out = append(out, *row.Text)
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return read("train.jsonl"), read("test.jsonl")
}

var (
	bpeTrainOnce    sync.Once
	bpeTrainResult  *TrainedTokenizer
	bpeTrainErr     error
	bpeTrainElapsed time.Duration
)

// bpeTrainFineFoods4000 trains vocab 4000 on the Fine Foods train split
// once per test binary.
func bpeTrainFineFoods4000(t *testing.T) (*TrainedTokenizer, []string, []string) {
	t.Helper()
	train, test := bpeTrainFineFoods(t)
	bpeTrainOnce.Do(func() {
		start := time.Now()
		bpeTrainResult, bpeTrainErr = TrainBPE(train, BPETrainOptions{VocabSize: 4000, MinFrequency: 2})
		bpeTrainElapsed = time.Since(start)
	})
	if bpeTrainErr != nil {
		t.Fatal(bpeTrainErr)
	}
	return bpeTrainResult, train, test
}

func TestTrainTokenizerFineFoods(t *testing.T) {
	tt, train, test := bpeTrainFineFoods4000(t)
	size := 0
	for _, s := range train {
		size += len(s)
	}
	t.Logf("trained vocab %d (%d merges) on %d reviews (%.1f MB) in %v", tt.VocabSize(), len(tt.Merges), len(train), float64(size)/1e6, bpeTrainElapsed)
	if tt.VocabSize() > 4000 || tt.VocabSize() < 3900 {
		t.Fatalf("vocab size %d, want at most 4000 (and close to it)", tt.VocabSize())
	}
	dir := t.TempDir()
	if err := tt.Save(dir); err != nil {
		t.Fatal(err)
	}
	tk, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != tt.VocabSize() {
		t.Fatalf("loaded vocab size %d, trained %d", tk.VocabSize(), tt.VocabSize())
	}
	if got := tk.ChatTemplate(); got != "chatml" {
		t.Errorf("chat family %q, want chatml", got)
	}
	imEnd, _ := tk.ID("<|im_end|>")
	if eos := tk.EOS(); len(eos) == 0 || eos[0] != imEnd || !tk.IsSpecial(imEnd) {
		t.Errorf("EOS %v, want <|im_end|> (%d) first", eos, imEnd)
	}
	// Every token id is in use and the vocab strings are distinct.
	for id := 0; id < tk.VocabSize(); id++ {
		if tk.TokenText(id) == "" {
			t.Fatalf("id %d has no text", id)
		}
	}
	if got := len(slices.Compact(slices.Sorted(slices.Values(tt.Tokens)))); got != len(tt.Tokens) {
		t.Fatalf("%d distinct token strings among %d", got, len(tt.Tokens))
	}

	for name, texts := range map[string][]string{"train": train, "test": test} {
		var nbytes, ntok int
		for i, s := range texts {
			ids := tk.Encode(s)
			if got := tk.Decode(ids); got != s {
				t.Fatalf("%s review %d does not round-trip:\n got %q\nwant %q", name, i, got, s)
			}
			nbytes += len(s)
			ntok += len(ids)
		}
		if ntok >= nbytes {
			t.Fatalf("%s: %d tokens for %d bytes", name, ntok, nbytes)
		}
		t.Logf("%s: %d reviews round-trip; %d bytes -> %d tokens, %.2f bytes/token", name, len(texts), nbytes, ntok, float64(nbytes)/float64(ntok))
	}
	// The Fine Foods reviews are plain English: 4000 tokens should give well
	// over 3 bytes a token on held-out text.
	var nbytes, ntok int
	for _, s := range test {
		nbytes, ntok = nbytes+len(s), ntok+len(tk.Encode(s))
	}
	if r := float64(nbytes) / float64(ntok); r < 3 {
		t.Errorf("test compression %.2f bytes/token, want at least 3", r)
	}
}

func TestTrainTokenizerDeterministic(t *testing.T) {
	tt, train, _ := bpeTrainFineFoods4000(t)
	again, err := TrainBPE(train, BPETrainOptions{VocabSize: 4000, MinFrequency: 2})
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := t.TempDir(), t.TempDir()
	if err := tt.Save(d1); err != nil {
		t.Fatal(err)
	}
	if err := again.Save(d2); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		a, err := os.ReadFile(filepath.Join(d1, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(d2, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two trainings", f)
		}
	}
}

// TestTrainTokenizerStructure compares the written tokenizer.json with
// Qwen3's: the same top-level keys, the same section types, and the
// normalizer, pre_tokenizer, post_processor and decoder copied exactly.
func TestTrainTokenizerStructure(t *testing.T) {
	tt, _, _ := bpeTrainFineFoods4000(t)
	var ours map[string]json.RawMessage
	if err := json.Unmarshal(tt.TokenizerJSON(), &ours); err != nil {
		t.Fatal(err)
	}
	var model struct {
		Type         string         `json:"type"`
		Vocab        map[string]int `json:"vocab"`
		Merges       [][]string     `json:"merges"`
		ByteFallback *bool          `json:"byte_fallback"`
		IgnoreMerges *bool          `json:"ignore_merges"`
	}
	if err := json.Unmarshal(ours["model"], &model); err != nil {
		t.Fatal(err)
	}
	if model.Type != "BPE" || model.ByteFallback == nil || *model.ByteFallback || model.IgnoreMerges == nil || *model.IgnoreMerges {
		t.Errorf("model type %q byte_fallback %v ignore_merges %v", model.Type, model.ByteFallback, model.IgnoreMerges)
	}
	if len(model.Vocab) != len(tt.Tokens) || len(model.Merges) != len(tt.Merges) {
		t.Errorf("vocab %d merges %d, want %d and %d", len(model.Vocab), len(model.Merges), len(tt.Tokens), len(tt.Merges))
	}
	var added []tokAdded
	if err := json.Unmarshal(ours["added_tokens"], &added); err != nil {
		t.Fatal(err)
	}
	for i, a := range added {
		want := tokAdded{ID: len(tt.Tokens) + i, Content: DefaultSpecialTokens[i], Normalized: ptr(false), Special: true}
		if !reflect.DeepEqual(a, want) {
			t.Errorf("added token %d: %+v, want %+v", i, a, want)
		}
	}
	if len(added) != len(DefaultSpecialTokens) {
		t.Errorf("%d added tokens", len(added))
	}

	dir, err := tokTestDir("qwen3")
	if err != nil {
		t.Skipf("no Qwen3 tokenizer.json to compare with: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var qwen map[string]json.RawMessage
	if err := json.Unmarshal(raw, &qwen); err != nil {
		t.Fatal(err)
	}
	if a, b := slices.Sorted(maps.Keys(ours)), slices.Sorted(maps.Keys(qwen)); !slices.Equal(a, b) {
		t.Errorf("top-level keys %v, Qwen3 has %v", a, b)
	}
	for _, k := range []string{"normalizer", "pre_tokenizer", "post_processor", "decoder"} {
		var a, b bytes.Buffer
		if err := json.Compact(&a, ours[k]); err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&b, qwen[k]); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Errorf("%s:\n ours %s\nQwen3 %s", k, a.String(), b.String())
		}
	}
	// The model section: the same keys and value kinds as Qwen3's.
	var om, qm map[string]any
	if err := json.Unmarshal(ours["model"], &om); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(qwen["model"], &qm); err != nil {
		t.Fatal(err)
	}
	for k, qv := range qm {
		ov, ok := om[k]
		if !ok {
			t.Errorf("model.%s missing", k)
			continue
		}
		if reflect.TypeOf(ov) != reflect.TypeOf(qv) {
			t.Errorf("model.%s is %T, Qwen3 has %T", k, ov, qv)
		}
		if k == "merges" {
			if a, b := reflect.TypeOf(ov.([]any)[0]), reflect.TypeOf(qv.([]any)[0]); a != b {
				t.Errorf("merge entries are %v, Qwen3's are %v", a, b)
			}
		}
	}
	if len(om) != len(qm) {
		t.Errorf("model has %d keys, Qwen3's %d", len(om), len(qm))
	}
	// The same text splits into pre-tokens alike: our vocabulary is a
	// subset, so every Qwen3 pre-token boundary is one of ours.
	tk, err := tt.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	qt := tokTestTokenizer(t, "qwen3")
	text := "I've had 123 boxes!!  Great\n\n\tvalue, 5 stars. Ça coûte 3,50€ <|im_end|>"
	var ours2, theirs []string
	tk.eachWord(text, func(w string) { ours2 = append(ours2, w) })
	qt.eachWord(text, func(w string) { theirs = append(theirs, w) })
	if !slices.Equal(ours2, theirs) {
		t.Errorf("pre-tokens differ:\n ours %q\nQwen3 %q", ours2, theirs)
	}
}

func TestBPETrainTiny(t *testing.T) {
	cases := []struct {
		name   string
		texts  []string
		opts   BPETrainOptions
		merges [][2]string
		encode string   // optional: text to encode with the result
		tokens []string // its token strings
	}{
		{
			// aa:4 first; then ab and (aa,a) tie at 2 and "a" < "aa"; then
			// (aa,ab):2; the rest occur once.
			name:   "aaabdaaabac min 2",
			texts:  []string{"aaabdaaabac"},
			opts:   BPETrainOptions{VocabSize: 1000, MinFrequency: 2},
			merges: [][2]string{{"a", "a"}, {"a", "b"}, {"aa", "ab"}},
			encode: "aaabdaaabac",
			tokens: []string{"aaab", "d", "aaab", "a", "c"},
		},
		{
			// With every pair allowed: (a,c) < (aaab,a) < (aaab,d) at count 1.
			name:   "aaabdaaabac to one token",
			texts:  []string{"aaabdaaabac"},
			opts:   BPETrainOptions{VocabSize: 1000},
			merges: [][2]string{{"a", "a"}, {"a", "b"}, {"aa", "ab"}, {"a", "c"}, {"aaab", "ac"}, {"aaab", "d"}, {"aaabd", "aaabac"}},
			encode: "aaabdaaabac",
			tokens: []string{"aaabdaaabac"},
		},
		{
			name:   "vocab size bounds the merges",
			texts:  []string{"aaabdaaabac"},
			opts:   BPETrainOptions{VocabSize: 256 + 3 + 2},
			merges: [][2]string{{"a", "a"}, {"a", "b"}},
			encode: "aaabdaaabac",
			tokens: []string{"aa", "ab", "d", "aa", "ab", "a", "c"},
		},
		{
			// Counts are weighted by how often each word occurs: " hug" is
			// the commonest, and words never merge across the space.
			name:  "word counts",
			texts: []string{"hug hug hug pug pun", "bun hug"},
			opts:  BPETrainOptions{VocabSize: 1000, MinFrequency: 2},
			// (u,g):5, (h,ug):4, (Ġ,hug):3, then (u,n) and (Ġ,p) tie at 2
			// and "u" < "Ġ" (U+0120).
			merges: [][2]string{{"u", "g"}, {"h", "ug"}, {"Ġ", "hug"}, {"u", "n"}, {"Ġ", "p"}},
			encode: "hug hug pun",
			tokens: []string{"hug", "Ġhug", "Ġp", "un"},
		},
		{
			// The Qwen pre-tokenizer isolates each digit.
			name:  "digits stay apart",
			texts: []string{"12 12 12 12"},
			opts:  BPETrainOptions{VocabSize: 1000, MinFrequency: 2},
			// Only " " runs before digits: "12"+" 12"... each " " is its
			// own pre-token, so nothing merges.
			merges: nil,
		},
		{
			// Special tokens written in the text are taken out first.
			name:   "special tokens are not learned",
			texts:  []string{"<|im_start|><|im_end|><|im_start|><|im_end|>xx<|im_end|>xx"},
			opts:   BPETrainOptions{VocabSize: 1000, MinFrequency: 2},
			merges: [][2]string{{"x", "x"}},
			encode: "<|im_start|>xx<|im_end|>",
			tokens: []string{"<|im_start|>", "xx", "<|im_end|>"},
		},
		{
			name:   "custom special tokens",
			texts:  []string{"ab ab"},
			opts:   BPETrainOptions{VocabSize: 1000, MinFrequency: 2, SpecialTokens: []string{"<pad>", "</s>"}},
			merges: [][2]string{{"a", "b"}},
			encode: "ab</s>",
			tokens: []string{"ab", "</s>"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tt, err := TrainBPE(c.texts, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tt.Merges, c.merges) {
				t.Fatalf("merges %q, want %q", tt.Merges, c.merges)
			}
			if tt.VocabSize() != 256+len(c.merges)+len(tt.SpecialTokens) {
				t.Errorf("vocab size %d", tt.VocabSize())
			}
			tk, err := tt.Tokenizer()
			if err != nil {
				t.Fatal(err)
			}
			if c.encode != "" {
				if got := tokTinyTokens(tk, c.encode); !slices.Equal(got, c.tokens) {
					t.Errorf("Encode(%q) = %q, want %q", c.encode, got, c.tokens)
				}
			}
			for _, s := range c.texts {
				if got := tk.Decode(tk.Encode(s)); got != s {
					t.Errorf("round trip %q -> %q", s, got)
				}
			}
		})
	}
}

func TestBPETrainAlphabet(t *testing.T) {
	tt, err := TrainBPE(nil, BPETrainOptions{VocabSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	if len(tt.Merges) != 0 || tt.VocabSize() != 259 {
		t.Fatalf("empty corpus: %d merges, vocab %d", len(tt.Merges), tt.VocabSize())
	}
	// GPT-2 (and Qwen) number the byte tokens by code point: "!" is 0.
	if tt.Tokens[0] != "!" || tt.Tokens[255] != string(bpeByteToRune[0xAD]) {
		t.Errorf("alphabet starts %q, ends %q", tt.Tokens[0], tt.Tokens[255])
	}
	tk, err := tt.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	// Every byte string round-trips with bytes alone (NFC leaves invalid
	// UTF-8 and ASCII alone).
	for _, s := range []string{string(all), "héllo wörld 日本語 🍕", "\x00\x01\xff\xfe"} {
		if got := tk.Decode(tk.Encode(s)); got != s {
			t.Errorf("round trip %q -> %q", s, got)
		}
	}
}

func TestBPETrainOptionErrors(t *testing.T) {
	for _, o := range []BPETrainOptions{
		{VocabSize: 258},
		{VocabSize: 1000, SpecialTokens: []string{"<a>", "<a>"}},
		{VocabSize: 1000, SpecialTokens: []string{""}},
		{VocabSize: 1000, ModelMaxLength: -1},
	} {
		if _, err := TrainBPE([]string{"abc"}, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestBPETrainProgress(t *testing.T) {
	var calls [][2]int
	tt, err := TrainBPE([]string{"aaabdaaabac"}, BPETrainOptions{VocabSize: 262, Progress: func(m, total int) { calls = append(calls, [2]int{m, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int{{1, 3}, {2, 3}, {3, 3}}
	if !slices.Equal(calls, want) || len(tt.Merges) != 3 {
		t.Errorf("progress %v, want %v", calls, want)
	}
}

// TestTrainTokenizerChat renders a conversation with the trained
// tokenizer's ChatML template and checks the special tokens come out as
// single ids and the whole prompt round-trips.
func TestTrainTokenizerChat(t *testing.T) {
	tt, err := TrainBPE([]string{"hello there, how are you?", "I am fine, thank you."}, BPETrainOptions{VocabSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tt.Save(dir); err != nil {
		t.Fatal(err)
	}
	tk, err := LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tk.ChatTemplate() != "chatml" {
		t.Fatalf("chat family %q", tk.ChatTemplate())
	}
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "hello there"}, {Role: "assistant", Content: "I am fine."}}
	prompt, err := tk.ApplyChat(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\nI am fine.<|im_end|>\n<|im_start|>assistant\n"
	if prompt != want {
		t.Fatalf("prompt %q, want %q", prompt, want)
	}
	ids := tk.Encode(prompt)
	if got := tk.Decode(ids); got != prompt {
		t.Fatalf("round trip %q", got)
	}
	start, _ := tk.ID("<|im_start|>")
	end, _ := tk.ID("<|im_end|>")
	var nStart, nEnd int
	for _, id := range ids {
		if id == start {
			nStart++
		}
		if id == end {
			nEnd++
		}
	}
	if nStart != 4 || nEnd != 3 {
		t.Errorf("%d <|im_start|> and %d <|im_end|> ids, want 4 and 3", nStart, nEnd)
	}
	if got := tk.DecodeSkipSpecial(ids); got != "system\nBe brief.\nuser\nhello there\nassistant\nI am fine.\nassistant\n" {
		t.Errorf("DecodeSkipSpecial %q", got)
	}
	if eos := tk.EOS(); len(eos) == 0 || eos[0] != end {
		t.Errorf("EOS %v, want <|im_end|> %d first", eos, end)
	}
}

// bpeTrainNaive is the textbook trainer: recount every pair after each
// merge. It checks the incremental counts of TrainBPE.
func bpeTrainNaive(texts []string, vocabSize, minFreq int) [][2]string {
	split, err := (&TrainedTokenizer{Tokens: bpeTrainAlphabet(), SpecialTokens: DefaultSpecialTokens, ModelMaxLength: 1}).Tokenizer()
	if err != nil {
		panic(err)
	}
	counts := map[string]int64{}
	for _, s := range texts {
		split.eachWord(s, func(w string) { counts[w]++ })
	}
	type word struct {
		syms []string
		n    int64
	}
	var words []word
	for w, n := range counts {
		var syms []string
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(bpeByteToRune[w[i]]))
		}
		words = append(words, word{syms, n})
	}
	vocab := map[string]bool{}
	for _, s := range bpeTrainAlphabet() {
		vocab[s] = true
	}
	var merges [][2]string
	for len(vocab)+len(DefaultSpecialTokens) < vocabSize {
		pairs := map[[2]string]int64{}
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.n
			}
		}
		var best [2]string
		var bestN int64
		for p, n := range pairs {
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN == 0 || bestN < int64(minFreq) {
			break
		}
		merges = append(merges, best)
		vocab[best[0]+best[1]] = true
		for k, w := range words {
			var out []string
			for i := 0; i < len(w.syms); i++ {
				if i+1 < len(w.syms) && w.syms[i] == best[0] && w.syms[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, w.syms[i])
				}
			}
			words[k].syms = out
		}
	}
	return merges
}

func TestBPETrainMatchesNaive(t *testing.T) {
	train, _ := bpeTrainFineFoods(t)
	for _, c := range []struct{ docs, vocab, minFreq int }{{150, 600, 2}, {50, 700, 0}} {
		texts := train[:c.docs]
		want := bpeTrainNaive(texts, c.vocab, c.minFreq)
		tt, err := TrainBPE(texts, BPETrainOptions{VocabSize: c.vocab, MinFrequency: c.minFreq})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) < 100 {
			t.Fatalf("naive trainer learned only %d merges", len(want))
		}
		for i := range min(len(want), len(tt.Merges)) {
			if tt.Merges[i] != want[i] {
				t.Fatalf("%+v: merge %d is %q, naive %q", c, i, tt.Merges[i], want[i])
			}
		}
		if len(tt.Merges) != len(want) {
			t.Fatalf("%+v: %d merges, naive %d", c, len(tt.Merges), len(want))
		}
	}
}
