package model

import (
	"fmt"
	"unicode/utf8"
)

// bpeModel is the BPE model of tokenizer.json: it turns one pre-tokenized
// word into token ids by applying merges in rank order, leftmost first among
// equal ranks, exactly as HuggingFace tokenizers does.
type bpeModel struct {
	vocab  map[string]int     // token string (byte-level form for byte-level BPE) -> id
	merges map[uint64]bpeRule // left id<<32 | right id -> rule

	byteLevel    bool      // words are raw bytes, each mapped to its GPT-2 character
	byteIDs      [256]int  // id of each byte's byte-level character, or -1
	ignoreMerges bool      // a word already in the vocab is one token
	byteFallback bool      // unknown characters become <0xNN> tokens
	fallbackIDs  [256]int  // id of <0xNN>, or -1
	unk          int       // unk_token id, or -1 (unknown characters are dropped)
	fuseUnk      bool      // consecutive unknowns become one unk
	cache        *bpeCache // per-word results; nil disables caching
}

// bpeRule is one merge: its priority (lower first) and the merged token.
type bpeRule struct {
	rank  int32
	token int32
}

func bpePairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeNewModel indexes the vocab and merges. A merge whose parts or result
// are not in the vocab cannot fire and is skipped.
func bpeNewModel(vocab map[string]int, merges [][2]string, byteLevel bool) (*bpeModel, error) {
	m := &bpeModel{vocab: vocab, merges: make(map[uint64]bpeRule, len(merges)), byteLevel: byteLevel, unk: -1, cache: bpeNewCache()}
	for rank, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		c, okC := vocab[mg[0]+mg[1]]
		if !okA || !okB || !okC {
			continue
		}
		// A repeated pair takes its last rank, as in HuggingFace (Rust and
		// JavaScript both build the map by overwriting).
		m.merges[bpePairKey(a, b)] = bpeRule{rank: int32(rank), token: int32(c)}
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		if id, ok := vocab[string(bpeByteToRune[b])]; ok {
			m.byteIDs[b] = id
		}
		m.fallbackIDs[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackIDs[b] = id
		}
	}
	return m, nil
}

// encodeWord appends the ids of one word (raw bytes when byte-level).
func (m *bpeModel) encodeWord(out []int, word string) []int {
	if word == "" {
		return out
	}
	if m.cache != nil {
		if ids, ok := m.cache.get(word); ok {
			return append(out, ids...)
		}
	}
	start := len(out)
	out = m.encodeUncached(out, word)
	if m.cache != nil && len(word) < bpeCacheMaxWord {
		m.cache.put(word, out[start:])
	}
	return out
}

func (m *bpeModel) encodeUncached(out []int, word string) []int {
	if m.ignoreMerges {
		key := word
		if m.byteLevel {
			key = bpeByteLevelString(word)
		}
		if id, ok := m.vocab[key]; ok {
			return append(out, id)
		}
	}
	syms := make([]bpeSymbol, 0, len(word))
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			syms = m.appendSymbol(syms, m.byteIDs[word[i]], word[i:i+1])
		}
	} else {
		for i := 0; i < len(word); {
			_, w := utf8.DecodeRuneInString(word[i:])
			id, ok := m.vocab[word[i:i+w]]
			if !ok {
				id = -1
			}
			syms = m.appendSymbol(syms, id, word[i:i+w])
			i += w
		}
	}
	bpeMerge(syms, m.merges)
	if len(syms) == 0 {
		return out
	}
	// The first symbol only ever absorbs its right neighbours: walk from it.
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

// appendSymbol adds the initial symbol for one character (id -1: not in the
// vocab), applying byte fallback or the unknown token.
func (m *bpeModel) appendSymbol(syms []bpeSymbol, id int, text string) []bpeSymbol {
	if id >= 0 {
		return bpeLink(syms, id)
	}
	if m.byteFallback {
		ok := true
		for i := 0; i < len(text); i++ {
			ok = ok && m.fallbackIDs[text[i]] >= 0
		}
		if ok {
			for i := 0; i < len(text); i++ {
				syms = bpeLink(syms, m.fallbackIDs[text[i]])
			}
			return syms
		}
	}
	if m.unk < 0 {
		return syms // HuggingFace drops characters it cannot encode
	}
	if m.fuseUnk && len(syms) > 0 && syms[len(syms)-1].id == m.unk {
		return syms
	}
	return bpeLink(syms, m.unk)
}
