package gateway

import (
	"bytes"
	"unicode/utf8"
)

// assembler turns the tokens a backend emits into the reply's text. It cuts
// the text at the first stop string (which is not returned), holds back the
// tail that could still grow into a stop string or that ends inside a UTF-8
// character, and pairs each piece of text it releases with the tokens whose
// first byte it holds, so that a stream sends every token's log
// probabilities exactly once and never sends text it must later take back.
type assembler struct {
	stops   [][]byte
	maxStop int

	text    []byte  // the bytes of all tokens so far, cut at the stop
	sent    int     // bytes of text already released
	toks    []Token // every token added before the stop
	starts  []int   // byte offset of each token in text
	sentTok int     // tokens already released
	stopped bool

	runeAt, runes int // a rune count cache for charOffset
}

// segment is text released by the assembler with the tokens that begin in it.
type segment struct {
	text   string
	toks   []Token
	starts []int // byte offset of each token in the whole completion
}

func (s segment) empty() bool { return s.text == "" && len(s.toks) == 0 }

// newAssembler returns an assembler for the stop strings; empty ones are
// ignored (they would stop before the first token).
func newAssembler(stops []string) *assembler {
	a := &assembler{}
	for _, s := range stops {
		if s != "" {
			a.stops = append(a.stops, []byte(s))
			a.maxStop = max(a.maxStop, len(s))
		}
	}
	return a
}

// tokenBytes returns the token's bytes, falling back to its text.
func tokenBytes(t Token) []byte {
	if t.Bytes != nil {
		return t.Bytes
	}
	return []byte(t.Text)
}

// add appends one generated token. It returns what may be sent now, and
// whether a stop string has been found (generation must end).
func (a *assembler) add(t Token) (segment, bool) {
	if a.stopped {
		return segment{}, true
	}
	old := len(a.text)
	a.toks = append(a.toks, t)
	a.starts = append(a.starts, old)
	a.text = append(a.text, tokenBytes(t)...)
	if cut, ok := a.findStop(old); ok {
		a.stopped = true
		a.text = a.text[:cut]
		return a.release(cut), true
	}
	return a.release(a.safeEnd()), false
}

// finish releases everything still held once generation ended without a
// stop string.
func (a *assembler) finish() segment {
	if a.stopped {
		return segment{}
	}
	seg := a.release(len(a.text))
	for ; a.sentTok < len(a.toks); a.sentTok++ { // empty tokens at the very end
		seg.toks = append(seg.toks, a.toks[a.sentTok])
		seg.starts = append(seg.starts, a.starts[a.sentTok])
	}
	return seg
}

// findStop finds the earliest stop string in text that ends after byte old
// (one ending before would have been found by an earlier call). Everything
// before sent was released because it cannot start a stop string, so the
// search starts no earlier than that.
func (a *assembler) findStop(old int) (int, bool) {
	if len(a.stops) == 0 {
		return 0, false
	}
	from := max(a.sent, old-a.maxStop+1)
	best := -1
	for _, s := range a.stops {
		if i := bytes.Index(a.text[from:], s); i >= 0 && (best < 0 || from+i < best) {
			best = from + i
		}
	}
	return best, best >= 0
}

// safeEnd is the end of the text that can be released: it stops before the
// longest unreleased suffix that is a proper prefix of a stop string, and
// before an incomplete UTF-8 character.
func (a *assembler) safeEnd() int {
	end := len(a.text)
	for k := min(a.maxStop-1, end-a.sent); k > 0; k-- {
		if a.prefixOfStop(a.text[end-k:]) {
			end -= k
			break
		}
	}
	return a.sent + completeUTF8(a.text[a.sent:end])
}

func (a *assembler) prefixOfStop(b []byte) bool {
	for _, s := range a.stops {
		if bytes.HasPrefix(s, b) {
			return true
		}
	}
	return false
}

// completeUTF8 returns the length of b without a trailing incomplete UTF-8
// sequence (invalid bytes count as complete: holding them gains nothing).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// release returns the text from sent to end and the tokens that start in it.
func (a *assembler) release(end int) segment {
	seg := segment{text: string(a.text[a.sent:end])}
	for ; a.sentTok < len(a.toks) && a.starts[a.sentTok] < end; a.sentTok++ {
		seg.toks = append(seg.toks, a.toks[a.sentTok])
		seg.starts = append(seg.starts, a.starts[a.sentTok])
	}
	a.sent = end
	return seg
}

// charOffset converts a byte offset in the text (non-decreasing between
// calls) into a character offset, as the legacy text_offset field wants:
// utf8.RuneCount(text[:byteOff]), counted incrementally. The cache only
// moves past complete characters, so a token that starts inside a character
// counts the same as a count from the beginning would.
func (a *assembler) charOffset(byteOff int) int {
	if byteOff < a.runeAt {
		a.runeAt, a.runes = 0, 0
	}
	seg := a.text[a.runeAt:byteOff]
	n := completeUTF8(seg)
	a.runes += utf8.RuneCount(seg[:n])
	a.runeAt += n
	return a.runes + utf8.RuneCount(seg[n:])
}
