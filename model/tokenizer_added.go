package model

import (
	"unicode"
	"unicode/utf8"
)

// tokAdded is an entry of tokenizer.json's added_tokens.
type tokAdded struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// normalized reports whether the token is matched on normalised text
// (HuggingFace's default: special tokens are not, others are).
func (a tokAdded) normalized() bool {
	if a.Normalized != nil {
		return *a.Normalized
	}
	return !a.Special
}

// tokTrie finds added tokens in text, leftmost first and longest at that
// position, like HuggingFace's Aho-Corasick matcher.
type tokTrie struct {
	nodes []tokTrieNode
	first [256]bool // bytes that start some token: a fast pre-check
}

type tokTrieNode struct {
	next map[byte]int32
	tok  int32 // index into the token list, or -1
}

func tokNewTrie() *tokTrie { return &tokTrie{nodes: []tokTrieNode{{tok: -1}}} }

func (t *tokTrie) add(s string, tok int) {
	if s == "" {
		return
	}
	t.first[s[0]] = true
	n := 0
	for i := 0; i < len(s); i++ {
		nx, ok := t.nodes[n].next[s[i]]
		if !ok {
			if t.nodes[n].next == nil {
				t.nodes[n].next = map[byte]int32{}
			}
			t.nodes = append(t.nodes, tokTrieNode{tok: -1})
			nx = int32(len(t.nodes) - 1)
			t.nodes[n].next[s[i]] = nx
		}
		n = int(nx)
	}
	t.nodes[n].tok = int32(tok)
}

// tokSegment is a piece of the input: an added token (tok >= 0) or text.
type tokSegment struct {
	text string
	tok  int // index into the token list, or -1
}

// split cuts s around the added tokens it contains. lstrip/rstrip tokens
// swallow the white space beside them; single_word tokens only match when
// not inside a word.
func (t *tokTrie) split(s string, toks []tokAdded, out []tokSegment) []tokSegment {
	if len(t.nodes[0].next) == 0 {
		return append(out, tokSegment{text: s, tok: -1})
	}
	textStart := 0 // start of the pending text segment
	for i := 0; i < len(s); {
		if !t.first[s[i]] {
			i++
			continue
		}
		tok, end := t.longestAt(s, i, toks)
		if tok < 0 {
			i++
			continue
		}
		a := toks[tok]
		start := i
		if a.Lstrip {
			for start > textStart {
				r, w := utf8.DecodeLastRuneInString(s[textStart:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= w
			}
		}
		if a.Rstrip {
			for end < len(s) {
				r, w := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += w
			}
		}
		if start > textStart {
			out = append(out, tokSegment{text: s[textStart:start], tok: -1})
		}
		out = append(out, tokSegment{text: s[start:end], tok: tok})
		textStart, i = end, end
	}
	if textStart < len(s) {
		out = append(out, tokSegment{text: s[textStart:], tok: -1})
	}
	return out
}

// longestAt returns the longest acceptable token starting at i and its end.
func (t *tokTrie) longestAt(s string, i int, toks []tokAdded) (tok, end int) {
	tok, end = -1, -1
	n := 0
	for j := i; j < len(s); j++ {
		nx, ok := t.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = int(nx)
		if k := int(t.nodes[n].tok); k >= 0 && (!toks[k].SingleWord || tokIsSingleWord(s, i, j+1)) {
			tok, end = k, j+1
		}
	}
	return tok, end
}

// tokIsSingleWord reports that s[i:e] is not glued to a word character on
// either side.
func tokIsSingleWord(s string, i, e int) bool {
	isWord := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_' }
	if i > 0 {
		if r, _ := utf8.DecodeLastRuneInString(s[:i]); isWord(r) {
			return false
		}
	}
	if e < len(s) {
		if r, _ := utf8.DecodeRuneInString(s[e:]); isWord(r) {
			return false
		}
	}
	return true
}
