package model

// Hand-written scanners for the pre-tokenizer regexes that use look-ahead,
// which Go's regexp cannot run. Each scanner returns the end of the match
// that a backtracking engine (Oniguruma, as HuggingFace tokenizers uses)
// finds at position i, trying the alternatives in order. Every character
// belongs to some alternative, so a match always exists and is non-empty.

// The Split patterns this file implements, recognised by exact string.
const (
	// pretokPatternQwen2 is the Qwen2/Qwen2.5/Qwen3 pattern (one digit a token).
	pretokPatternQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// pretokPatternLlama3 is the Llama-3 (tiktoken cl100k-style) pattern.
	pretokPatternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// pretokPatternGPT2 is the GPT-2 pattern, also what ByteLevel uses when
	// use_regex is true.
	pretokPatternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// pretokScanner returns the end of the match starting at i (i < len(s)).
type pretokScanner func(s string, i int) int

// pretokKnownScanner returns the scanner for a known pattern, or nil.
func pretokKnownScanner(pattern string) pretokScanner {
	switch pattern {
	case pretokPatternQwen2:
		return func(s string, i int) int { return pretokScanTiktoken(s, i, 1) }
	case pretokPatternLlama3:
		return func(s string, i int) int { return pretokScanTiktoken(s, i, 3) }
	case pretokPatternGPT2:
		return pretokScanGPT2
	}
	return nil
}

// pretokContraction matches 's 't 're 've 'm 'll 'd at i (ASCII letters,
// optionally case-insensitive) and returns the match end, or -1.
func pretokContraction(s string, i int, fold bool) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return -1
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return i + 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return i + 3
		}
	}
	return -1
}

// pretokScanWhitespace handles the trailing `\s+(?!\S)|\s+` alternatives for
// a white-space run starting at i: the whole run when it ends the text,
// otherwise all but its last character (which then joins the next word),
// and the single character when the run has only one.
func pretokScanWhitespace(s string, i int) int {
	j := pretokRun(s, i, pretokIsWS)
	if j == len(s) {
		return j
	}
	// Back off one character: the last one of the run.
	k := j - 1
	for k > i && s[k]&0xC0 == 0x80 {
		k--
	}
	if k > i {
		return k
	}
	return j
}

// pretokScanTiktoken implements pretokPatternQwen2 (maxDigits 1) and
// pretokPatternLlama3 (maxDigits 3):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)
//	[^\r\n\p{L}\p{N}]?\p{L}+
//	\p{N}{1,maxDigits}
//	 ?[^\s\p{L}\p{N}]+[\r\n]*
//	\s*[\r\n]+
//	\s+(?!\S)
//	\s+
func pretokScanTiktoken(s string, i int, maxDigits int) int {
	if e := pretokContraction(s, i, true); e >= 0 {
		return e
	}
	c, w := pretokClassAt(s, i)
	var next pretokClass = 255
	if i+w < len(s) {
		next, _ = pretokClassAt(s, i+w)
	}
	switch {
	case c == pretokLetter:
		return pretokRun(s, i, pretokIsLetter)
	case c != pretokNewline && c != pretokNumber && next == pretokLetter:
		return pretokRun(s, i+w, pretokIsLetter)
	case c == pretokNumber:
		j := i
		for n := 0; n < maxDigits && j < len(s); n++ {
			cj, wj := pretokClassAt(s, j)
			if cj != pretokNumber {
				break
			}
			j += wj
		}
		return j
	case c == pretokOther || (s[i] == ' ' && next == pretokOther):
		start := i
		if c != pretokOther {
			start = i + 1
		}
		j := pretokRun(s, start, pretokIsOther)
		return pretokRun(s, j, pretokIsNL)
	}
	// c is white space. \s*[\r\n]+ : up to the last line break of the run.
	j := pretokRun(s, i, pretokIsWS)
	for k := j - 1; k >= i; k-- {
		if s[k] == '\n' || s[k] == '\r' {
			return k + 1
		}
	}
	return pretokScanWhitespace(s, i)
}

// pretokScanGPT2 implements pretokPatternGPT2:
//
//	's|'t|'re|'ve|'m|'ll|'d
//	 ?\p{L}+
//	 ?\p{N}+
//	 ?[^\s\p{L}\p{N}]+
//	\s+(?!\S)
//	\s+
func pretokScanGPT2(s string, i int) int {
	if e := pretokContraction(s, i, false); e >= 0 {
		return e
	}
	c, _ := pretokClassAt(s, i)
	start := i
	if s[i] == ' ' && i+1 < len(s) {
		if next, _ := pretokClassAt(s, i+1); !pretokIsWS(next) {
			c, start = next, i+1
		}
	}
	switch c {
	case pretokLetter:
		return pretokRun(s, start, pretokIsLetter)
	case pretokNumber:
		return pretokRun(s, start, pretokIsNumber)
	case pretokOther:
		return pretokRun(s, start, pretokIsOther)
	}
	return pretokScanWhitespace(s, i)
}
