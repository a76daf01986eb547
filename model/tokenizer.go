package model

import (
	"slices"
)

// Tokenizer is a BPE tokenizer read from a HuggingFace tokenizer.json (and
// its tokenizer_config.json): normaliser, pre-tokenizer, BPE model, added
// tokens and decoder, written from scratch to give exactly the ids
// HuggingFace tokenizers gives. Byte-level BPE (GPT-2, Llama-3, Qwen,
// SmolLM) is the main case; SentencePiece-style BPE with byte fallback
// (Llama-2, Mistral) is handled too. A Tokenizer is safe for concurrent use.
type Tokenizer struct {
	model     *bpeModel
	normalize tokNormalizer // nil: identity
	pretok    []pretokStep
	decoder   *tokDecoder

	added    []tokAdded
	rawTrie  *tokTrie // added tokens matched on the input text
	normTrie *tokTrie // added tokens matched after normalisation; nil if none
	byText   map[string]int

	tokens  []string // token string by id ("" for ids not in use)
	special []bool   // by id
	bytes   []byte   // decoded bytes of all tokens, by id through offs
	offs    []int32  // bytes[offs[id]:offs[id+1]]

	bos     int // -1: none
	eos     []int
	chat    chatFamily
	bosText string
	eosText string
	sysText string // default system prompt of a ChatML template, if any
}

// Encode returns the ids of text, like HuggingFace's encode(text,
// add_special_tokens=False): no BOS is added, and added tokens written in
// the text (such as "<|im_start|>") become their single ids.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	var segs, sub []tokSegment
	segs = t.rawTrie.split(text, t.added, segs)
	for k, seg := range segs {
		if seg.tok >= 0 {
			ids = append(ids, t.added[seg.tok].ID)
			continue
		}
		s := seg.text
		if t.normalize != nil {
			s = t.normalize(s)
		}
		if t.normTrie == nil {
			ids = t.encodeSection(ids, s, k == 0)
			continue
		}
		sub = t.normTrie.split(s, t.added, sub[:0])
		for j, ss := range sub {
			if ss.tok >= 0 {
				ids = append(ids, t.added[ss.tok].ID)
			} else {
				ids = t.encodeSection(ids, ss.text, k == 0 && j == 0)
			}
		}
	}
	return ids
}

// encodeSection pre-tokenizes normalised text without added tokens and runs
// BPE on each word. first says the section starts the input.
func (t *Tokenizer) encodeSection(ids []int, s string, first bool) []int {
	if s == "" {
		return ids
	}
	// Fast path: a single Split scanner (Qwen, Llama-3) needs no slices.
	if len(t.pretok) == 1 {
		if sp, ok := t.pretok[0].(pretokSplit); ok && sp.behavior == pretokIsolated && !sp.invert {
			if sc, ok := sp.m.(pretokScanner); ok {
				for i := 0; i < len(s); {
					e := sc(s, i)
					ids = t.model.encodeWord(ids, s[i:e])
					i = e
				}
				return ids
			}
		}
	}
	pieces := []string{s}
	for _, st := range t.pretok {
		pieces = st.apply(pieces, first)
	}
	for _, w := range pieces {
		ids = t.model.encodeWord(ids, w)
	}
	return ids
}

// Decode returns the text of ids, special tokens included as their text.
// Ids that are not in use are skipped. The result is the raw decoded bytes:
// ids cut in the middle of a UTF-8 sequence give invalid UTF-8 (HuggingFace
// would show U+FFFD there), so that concatenated pieces stay lossless.
func (t *Tokenizer) Decode(ids []int) string {
	return t.decode(ids, false)
}

// DecodeSkipSpecial is Decode without the special tokens (those marked
// special in added_tokens, such as "<|im_end|>"; Qwen's "<think>" is not).
func (t *Tokenizer) DecodeSkipSpecial(ids []int) string {
	return t.decode(ids, true)
}

func (t *Tokenizer) decode(ids []int, skipSpecial bool) string {
	var out []byte
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || (skipSpecial && t.special[id]) {
			continue
		}
		out = append(out, t.bytes[t.offs[id]:t.offs[id+1]]...)
	}
	return string(t.decoder.finish(out))
}

// TokenText is the decoded text of one token; it may be part of a UTF-8
// sequence (byte-level tokens often are), returned as raw bytes.
func (t *Tokenizer) TokenText(id int) string { return string(t.tokenBytes(id)) }

// TokenBytes is the decoded bytes of one token (a copy).
func (t *Tokenizer) TokenBytes(id int) []byte { return slices.Clone(t.tokenBytes(id)) }

func (t *Tokenizer) tokenBytes(id int) []byte {
	if id < 0 || id >= len(t.tokens) {
		return nil
	}
	return t.bytes[t.offs[id]:t.offs[id+1]]
}

// ID returns the id of a token given as its token string: an added token's
// content or a vocab entry (in byte-level form for byte-level BPE, e.g.
// "Ġthe" for " the").
func (t *Tokenizer) ID(token string) (int, bool) {
	if id, ok := t.byText[token]; ok {
		return id, true
	}
	id, ok := t.model.vocab[token]
	return id, ok
}

// VocabSize is the largest id in use plus one (the embedding rows needed).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence token, if the tokenizer has one.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns the ids that end generation: tokenizer_config.json's
// eos_token first, then the end-of-turn tokens of the known families that
// the vocabulary has.
func (t *Tokenizer) EOS() []int { return slices.Clone(t.eos) }

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}
