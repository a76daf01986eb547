package model

import (
	"unicode"
	"unicode/utf8"
)

// pretokClass is the character class the pre-tokenizer patterns care about:
// \p{L}, \p{N}, \s (split into line breaks \r \n and other white space) and
// everything else. Invalid UTF-8 bytes are "other", one byte wide, so that
// byte-level BPE can still encode (and decode back) arbitrary bytes.
type pretokClass uint8

const (
	pretokOther pretokClass = iota
	pretokLetter
	pretokNumber
	pretokSpace   // \s but not \r or \n
	pretokNewline // \r or \n
)

// pretokASCII classifies the ASCII range without table look-ups.
var pretokASCII = func() (t [utf8.RuneSelf]pretokClass) {
	for c := 0; c < utf8.RuneSelf; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			t[c] = pretokLetter
		case c >= '0' && c <= '9':
			t[c] = pretokNumber
		case c == '\r' || c == '\n':
			t[c] = pretokNewline
		case c == ' ' || c == '\t' || c == '\v' || c == '\f':
			t[c] = pretokSpace
		}
	}
	return t
}()

// pretokIsSpace reports Unicode White_Space, which is what \s means in the
// regex engines HuggingFace tokenizers (Oniguruma) and tiktoken (Rust regex)
// use: \t-\r, U+0085, and the Z categories. JavaScript's \s differs on two
// code points (it adds U+FEFF and drops U+0085); we follow the Rust side.
func pretokIsSpace(r rune) bool {
	switch {
	case r < utf8.RuneSelf:
		c := pretokASCII[r]
		return c == pretokSpace || c == pretokNewline
	case r == 0x85:
		return true
	}
	return unicode.In(r, unicode.Z)
}

// pretokClassAt returns the class and byte width of the character at s[i].
func pretokClassAt(s string, i int) (pretokClass, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return pretokASCII[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && w == 1:
		return pretokOther, 1
	case unicode.IsLetter(r):
		return pretokLetter, w
	case unicode.IsNumber(r):
		return pretokNumber, w
	case pretokIsSpace(r):
		return pretokSpace, w
	}
	return pretokOther, w
}

// pretokIsWS reports whether a class is \s.
func pretokIsWS(c pretokClass) bool { return c == pretokSpace || c == pretokNewline }

// pretokRun returns the end of the run of characters starting at i whose
// class satisfies ok.
func pretokRun(s string, i int, ok func(pretokClass) bool) int {
	for i < len(s) {
		c, w := pretokClassAt(s, i)
		if !ok(c) {
			break
		}
		i += w
	}
	return i
}

func pretokIsLetter(c pretokClass) bool { return c == pretokLetter }
func pretokIsNumber(c pretokClass) bool { return c == pretokNumber }
func pretokIsOther(c pretokClass) bool  { return c == pretokOther }
func pretokIsNL(c pretokClass) bool     { return c == pretokNewline }
