package model

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/distillery/distillery/store"
)

// BPETrainOptions configures TrainBPE.
type BPETrainOptions struct {
	// VocabSize is the total number of ids wanted: the 256 byte tokens, the
	// learned merges and the special tokens. Training stops earlier when no
	// pair is left that occurs MinFrequency times.
	VocabSize int
	// MinFrequency is the fewest (weighted) occurrences a pair needs to be
	// merged; 0 and 1 both mean any pair that occurs at all.
	MinFrequency int
	// SpecialTokens become added tokens (special: true) after the learned
	// vocabulary, in this order. Empty means DefaultSpecialTokens.
	SpecialTokens []string
	// ModelMaxLength is tokenizer_config.json's model_max_length; 0 means
	// 32768.
	ModelMaxLength int
	// Progress, when set, is called after each merge with the merges done
	// and the most that VocabSize allows.
	Progress func(merges, total int)
}

// DefaultSpecialTokens are the ChatML special tokens of Qwen2/Qwen3.
var DefaultSpecialTokens = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}

// TrainedTokenizer is a byte-level BPE tokenizer learned by TrainBPE, in the
// Qwen2/Qwen3 (ChatML) layout: ids 0-255 are the bytes (their GPT-2
// byte-level characters in code point order, as GPT-2 and Qwen number
// them), then the merge results in the order learned, then the special
// tokens.
type TrainedTokenizer struct {
	Tokens         []string    // byte-level token strings by id, specials excluded
	Merges         [][2]string // in rank order; a merge may reuse an existing token
	SpecialTokens  []string    // ids len(Tokens)+i
	ModelMaxLength int
}

// VocabSize is the number of ids: tokens plus special tokens.
func (t *TrainedTokenizer) VocabSize() int { return len(t.Tokens) + len(t.SpecialTokens) }

// The sections of Qwen3's tokenizer.json that TrainedTokenizer copies
// verbatim (compact form, keys in the file's order): NFC, the Qwen2 Split
// regex then ByteLevel without its own regex, and the ByteLevel
// post-processor and decoder.
const (
	bpeTrainNormalizer    = `{"type":"NFC"}`
	bpeTrainPreTokenizer  = `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}`
	bpeTrainPostProcessor = `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`
	bpeTrainDecoder       = `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}`
)

// bpeTrainChatTemplate is a plain ChatML template (no default system
// prompt), written when the special tokens include <|im_start|> and
// <|im_end|>.
const bpeTrainChatTemplate = `{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}`

// TrainBPE learns a byte-level BPE tokenizer from texts. Each text is split
// exactly as the resulting tokenizer's Encode splits it (special tokens
// written in the text are taken out, NFC, then the Qwen2 pre-tokenizer), the
// distinct pre-tokens are counted, and then the most frequent adjacent pair
// of symbols is merged, over and over, until VocabSize ids are used or no
// pair occurs MinFrequency times. Ties go to the pair whose left token
// string (byte-level form) is smallest, then whose right one is; the result
// is deterministic.
func TrainBPE(texts []string, opts BPETrainOptions) (*TrainedTokenizer, error) {
	specials := opts.SpecialTokens
	if len(specials) == 0 {
		specials = DefaultSpecialTokens
	}
	seen := map[string]bool{}
	for _, s := range specials {
		if s == "" || seen[s] {
			return nil, fmt.Errorf("train tokenizer: special token %q is empty or repeated", s)
		}
		seen[s] = true
	}
	if opts.VocabSize < 256+len(specials) {
		return nil, fmt.Errorf("train tokenizer: vocab size %d is below the %d bytes and special tokens", opts.VocabSize, 256+len(specials))
	}
	if opts.ModelMaxLength < 0 {
		return nil, fmt.Errorf("train tokenizer: model max length %d is negative", opts.ModelMaxLength)
	}
	maxLen := opts.ModelMaxLength
	if maxLen == 0 {
		maxLen = 32768
	}
	out := &TrainedTokenizer{Tokens: bpeTrainAlphabet(), SpecialTokens: slices.Clone(specials), ModelMaxLength: maxLen}

	// The untrained tokenizer splits the corpus: the same code Encode runs.
	split, err := out.Tokenizer()
	if err != nil {
		return nil, fmt.Errorf("train tokenizer: %w", err)
	}
	counts := map[string]int64{}
	for _, text := range texts {
		split.eachWord(text, func(w string) { counts[w]++ })
	}
	tr := newBPETrainer(out.Tokens, counts)
	total := opts.VocabSize - 256 - len(specials)
	for len(tr.tokens)+len(specials) < opts.VocabSize {
		a, b, ok := tr.best(int64(max(opts.MinFrequency, 1)))
		if !ok {
			break
		}
		tr.merge(a, b)
		out.Merges = append(out.Merges, [2]string{tr.tokens[a], tr.tokens[b]})
		if opts.Progress != nil {
			opts.Progress(len(out.Merges), total)
		}
	}
	out.Tokens = tr.tokens
	return out, nil
}

// bpeTrainAlphabet is the 256 byte-level characters in code point order.
func bpeTrainAlphabet() []string {
	runes := make([]rune, 256)
	copy(runes, bpeByteToRune[:])
	slices.Sort(runes)
	toks := make([]string, 256)
	for i, r := range runes {
		toks[i] = string(r)
	}
	return toks
}

// eachWord calls fn with each pre-tokenized word of text (raw bytes, before
// the byte-level mapping), split exactly as Encode splits it.
func (t *Tokenizer) eachWord(text string, fn func(string)) {
	emit := func(s string, first bool) {
		if s == "" {
			return
		}
		pieces := []string{s}
		for _, st := range t.pretok {
			pieces = st.apply(pieces, first)
		}
		for _, w := range pieces {
			if w != "" {
				fn(w)
			}
		}
	}
	for k, seg := range t.rawTrie.split(text, t.added, nil) {
		if seg.tok >= 0 {
			continue
		}
		s := seg.text
		if t.normalize != nil {
			s = t.normalize(s)
		}
		if t.normTrie == nil {
			emit(s, k == 0)
			continue
		}
		for j, ss := range t.normTrie.split(s, t.added, nil) {
			if ss.tok < 0 {
				emit(ss.text, k == 0 && j == 0)
			}
		}
	}
}

// bpeTrainer holds the words as symbol ids with their counts, the count of
// every adjacent pair, the words each pair may occur in, and a max-heap of
// pairs whose entries may be stale (checked when popped).
type bpeTrainer struct {
	tokens []string
	ids    map[string]int32
	words  [][]int32
	counts []int64
	pairs  map[uint64]int64
	where  map[uint64][]int32 // may hold repeats and words the pair left
	heap   bpeTrainHeap
	stamp  []int32 // per word: last merge that visited it, plus one
	nmerge int32
}

func newBPETrainer(alphabet []string, counts map[string]int64) *bpeTrainer {
	tr := &bpeTrainer{tokens: slices.Clone(alphabet), ids: map[string]int32{}, pairs: map[uint64]int64{}, where: map[uint64][]int32{}}
	tr.heap.tokens = &tr.tokens
	var byteID [256]int32
	for i, s := range tr.tokens {
		tr.ids[s] = int32(i)
	}
	for b := 0; b < 256; b++ {
		byteID[b] = tr.ids[string(bpeByteToRune[b])]
	}
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	slices.Sort(words)
	for wi, w := range words {
		syms := make([]int32, len(w))
		for i := 0; i < len(w); i++ {
			syms[i] = byteID[w[i]]
		}
		tr.words = append(tr.words, syms)
		tr.counts = append(tr.counts, counts[w])
		for i := 0; i+1 < len(syms); i++ {
			tr.add(syms[i], syms[i+1], counts[w], int32(wi))
		}
	}
	tr.stamp = make([]int32, len(tr.words))
	for p, c := range tr.pairs {
		tr.heap.items = append(tr.heap.items, bpeTrainItem{count: c, pair: p})
	}
	heap.Init(&tr.heap)
	return tr
}

// add changes a pair's count by delta, noting word w as a place it occurs.
func (tr *bpeTrainer) add(a, b int32, delta int64, w int32) {
	p := bpePairKey(int(a), int(b))
	c := tr.pairs[p] + delta
	if c == 0 {
		delete(tr.pairs, p)
	} else {
		tr.pairs[p] = c
	}
	if delta > 0 {
		if ws := tr.where[p]; len(ws) == 0 || ws[len(ws)-1] != w {
			tr.where[p] = append(ws, w)
		}
	}
}

// best pops the most frequent pair, if it occurs at least minFreq times.
func (tr *bpeTrainer) best(minFreq int64) (a, b int32, ok bool) {
	for tr.heap.Len() > 0 {
		it := heap.Pop(&tr.heap).(bpeTrainItem)
		c := tr.pairs[it.pair]
		if c != it.count {
			if c > 0 {
				heap.Push(&tr.heap, bpeTrainItem{count: c, pair: it.pair})
			}
			continue
		}
		if c < minFreq {
			heap.Push(&tr.heap, it)
			return 0, 0, false
		}
		return int32(it.pair >> 32), int32(uint32(it.pair)), true
	}
	return 0, 0, false
}

// merge replaces every occurrence of a b, leftmost first in each word, with
// their concatenation (a new token unless that string already is one) and
// updates the pair counts.
func (tr *bpeTrainer) merge(a, b int32) {
	s := tr.tokens[a] + tr.tokens[b]
	c, ok := tr.ids[s]
	if !ok {
		c = int32(len(tr.tokens))
		tr.tokens = append(tr.tokens, s)
		tr.ids[s] = c
	}
	tr.nmerge++
	p := bpePairKey(int(a), int(b))
	var grown []uint64
	note := func(x, y int32) { grown = append(grown, bpePairKey(int(x), int(y))) }
	for _, w := range tr.where[p] {
		if tr.stamp[w] == tr.nmerge {
			continue
		}
		tr.stamp[w] = tr.nmerge
		syms, n := tr.words[w], tr.counts[w]
		j := 0 // syms[:j] is the merged word so far; reads stay ahead of j
		for i := 0; i < len(syms); {
			if i+1 < len(syms) && syms[i] == a && syms[i+1] == b {
				tr.add(a, b, -n, w)
				if j > 0 {
					prev := syms[j-1]
					tr.add(prev, a, -n, w)
					tr.add(prev, c, n, w)
					note(prev, c)
				}
				if i+2 < len(syms) {
					next := syms[i+2]
					tr.add(b, next, -n, w)
					tr.add(c, next, n, w)
					note(c, next)
				}
				syms[j] = c
				j, i = j+1, i+2
				continue
			}
			syms[j] = syms[i]
			j, i = j+1, i+1
		}
		tr.words[w] = syms[:j]
	}
	delete(tr.where, p)
	slices.Sort(grown)
	for _, q := range slices.Compact(grown) {
		if n := tr.pairs[q]; n > 0 {
			heap.Push(&tr.heap, bpeTrainItem{count: n, pair: q})
		}
	}
}

type bpeTrainItem struct {
	count int64
	pair  uint64
}

// bpeTrainHeap orders pairs by count (highest first), then by the left
// token's string, then the right one's (smallest first).
type bpeTrainHeap struct {
	items  []bpeTrainItem
	tokens *[]string
}

func (h *bpeTrainHeap) Len() int { return len(h.items) }
func (h *bpeTrainHeap) Less(i, j int) bool {
	x, y := h.items[i], h.items[j]
	if x.count != y.count {
		return x.count > y.count
	}
	toks := *h.tokens
	xa, ya := toks[x.pair>>32], toks[y.pair>>32]
	if xa != ya {
		return xa < ya
	}
	return toks[uint32(x.pair)] < toks[uint32(y.pair)]
}
func (h *bpeTrainHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *bpeTrainHeap) Push(x any)    { h.items = append(h.items, x.(bpeTrainItem)) }
func (h *bpeTrainHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}

// jsonString writes s as a JSON string without HTML escaping (as
// HuggingFace writes tokenizer.json).
func bpeTrainString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// TokenizerJSON returns tokenizer.json, indented as HuggingFace writes it.
func (t *TrainedTokenizer) TokenizerJSON() []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":"1.0","truncation":null,"padding":null,"added_tokens":[`)
	for i, s := range t.SpecialTokens {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":` + strconv.Itoa(len(t.Tokens)+i) + `,"content":`)
		bpeTrainString(&b, s)
		b.WriteString(`,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}`)
	}
	b.WriteString(`],"normalizer":` + bpeTrainNormalizer + `,"pre_tokenizer":` + bpeTrainPreTokenizer +
		`,"post_processor":` + bpeTrainPostProcessor + `,"decoder":` + bpeTrainDecoder +
		`,"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{`)
	for id, s := range t.Tokens {
		if id > 0 {
			b.WriteByte(',')
		}
		bpeTrainString(&b, s)
		b.WriteString(":" + strconv.Itoa(id))
	}
	b.WriteString(`},"merges":[`)
	for i, m := range t.Merges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		bpeTrainString(&b, m[0])
		b.WriteByte(',')
		bpeTrainString(&b, m[1])
		b.WriteByte(']')
	}
	b.WriteString(`]}}`)
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		panic("tokenizer.json: " + err.Error()) // a bug: the text above is valid JSON
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// ConfigJSON returns tokenizer_config.json: the special tokens, EOS
// (<|im_end|>, else <|endoftext|>), pad (<|endoftext|>) and, when the
// special tokens allow it, a ChatML chat template.
func (t *TrainedTokenizer) ConfigJSON() []byte {
	type added struct {
		Content    string `json:"content"`
		Lstrip     bool   `json:"lstrip"`
		Normalized bool   `json:"normalized"`
		Rstrip     bool   `json:"rstrip"`
		SingleWord bool   `json:"single_word"`
		Special    bool   `json:"special"`
	}
	has := func(s string) bool { return slices.Contains(t.SpecialTokens, s) }
	var eos, pad, template any
	if has("<|endoftext|>") {
		eos, pad = "<|endoftext|>", "<|endoftext|>"
	}
	if has("<|im_end|>") {
		eos = "<|im_end|>"
	}
	if has("<|im_start|>") && has("<|im_end|>") {
		template = bpeTrainChatTemplate
	}
	decoder := map[string]added{}
	for i, s := range t.SpecialTokens {
		decoder[strconv.Itoa(len(t.Tokens)+i)] = added{Content: s, Special: true}
	}
	cfg := struct {
		AddBOS         bool             `json:"add_bos_token"`
		AddPrefixSpace bool             `json:"add_prefix_space"`
		AddedTokens    map[string]added `json:"added_tokens_decoder"`
		Additional     []string         `json:"additional_special_tokens"`
		BOS            any              `json:"bos_token"`
		ChatTemplate   any              `json:"chat_template"`
		CleanUp        bool             `json:"clean_up_tokenization_spaces"`
		EOS            any              `json:"eos_token"`
		Errors         string           `json:"errors"`
		ModelMaxLength int              `json:"model_max_length"`
		Pad            any              `json:"pad_token"`
		SplitSpecial   bool             `json:"split_special_tokens"`
		TokenizerClass string           `json:"tokenizer_class"`
		Unk            any              `json:"unk_token"`
	}{
		AddedTokens: decoder, Additional: t.SpecialTokens, ChatTemplate: template, EOS: eos,
		Errors: "replace", ModelMaxLength: t.ModelMaxLength, Pad: pad, TokenizerClass: "PreTrainedTokenizerFast",
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		panic("tokenizer_config.json: " + err.Error())
	}
	return b.Bytes()
}

// Tokenizer parses the files TokenizerJSON and ConfigJSON give, as
// LoadTokenizer would read them from disk.
func (t *TrainedTokenizer) Tokenizer() (*Tokenizer, error) {
	return ParseTokenizer(t.TokenizerJSON(), t.ConfigJSON())
}

// Save writes tokenizer.json and tokenizer_config.json into dir (created if
// needed), each atomically.
func (t *TrainedTokenizer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "tokenizer.json"), t.TokenizerJSON()); err != nil {
		return err
	}
	return store.WriteFileAtomic(filepath.Join(dir, "tokenizer_config.json"), t.ConfigJSON())
}
