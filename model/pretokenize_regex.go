package model

import (
	"fmt"
	"regexp"
	"strings"
)

// tokLookaround matches the regex syntax Go's regexp lacks and that we cannot
// translate: look-ahead, look-behind, atomic groups, possessive quantifiers.
var tokLookaround = regexp.MustCompile(`\(\?[=!>]|\(\?<[=!]|[*+?}]\+`)

// tokCompileRegex compiles a tokenizer.json (Oniguruma) regex with Go's
// regexp after giving \s, \d and \w their Unicode meaning. A pattern that
// needs look-around fails with an error naming it.
func tokCompileRegex(pattern string) (*regexp.Regexp, error) {
	if tokLookaround.MatchString(pattern) {
		return nil, fmt.Errorf("regex `%s` needs look-around, which is only supported for the known Qwen2, Llama-3 and GPT-2 patterns", pattern)
	}
	re, err := regexp.Compile(tokTranslateRegex(pattern))
	if err != nil {
		return nil, fmt.Errorf("regex `%s`: %w", pattern, err)
	}
	return re, nil
}

// tokTranslateRegex rewrites the ASCII-only Go classes \s \d \w (and their
// negations outside brackets) to the Unicode classes Oniguruma uses.
func tokTranslateRegex(p string) string {
	const space, digit, word = `\t-\r\x{85}\p{Z}`, `\p{Nd}`, `\p{L}\p{M}\p{Nd}\p{Pc}`
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' && i+1 < len(p) {
			e := p[i+1]
			i++
			var cls string
			switch e {
			case 's', 'S':
				cls = space
			case 'd', 'D':
				cls = digit
			case 'w', 'W':
				cls = word
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
				continue
			}
			neg := e == 'S' || e == 'D' || e == 'W'
			switch {
			case inClass && neg:
				b.WriteByte('\\')
				b.WriteByte(e) // rare; keep Go's ASCII meaning
			case inClass:
				b.WriteString(cls)
			case neg:
				b.WriteString("[^" + cls + "]")
			default:
				b.WriteString("[" + cls + "]")
			}
			continue
		}
		switch {
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ']' or '^]' right after '[' is literal.
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
			continue
		case c == ']' && inClass:
			inClass = false
		}
		b.WriteByte(c)
	}
	return b.String()
}
