package datasets

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize returns the form of text used to detect duplicates and to derive
// content-hash ids: Unicode NFC, lower-cased (per rune, as strings.ToLower),
// every run of white space (unicode.IsSpace) collapsed into one ASCII space,
// and no leading or trailing white space. Two texts that differ only in
// case, spacing or Unicode composition therefore count as the same text.
func Normalize(text string) string {
	return string(appendNormalized(nil, text))
}

// appendNormalized appends Normalize(text) to dst; Import reuses one buffer
// for every row.
func appendNormalized(dst []byte, text string) []byte {
	if !isASCII(text) && !norm.NFC.IsNormalString(text) {
		text = norm.NFC.String(text)
	}
	start := len(dst)
	space := false // a space is pending
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == ' ' || (c >= '\t' && c <= '\r'):
				space = len(dst) > start
				continue
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			if space {
				dst = append(dst, ' ')
				space = false
			}
			dst = append(dst, c)
			continue
		}
		r, n := utf8.DecodeRuneInString(text[i:])
		i += n
		if unicode.IsSpace(r) {
			space = len(dst) > start
			continue
		}
		if space {
			dst = append(dst, ' ')
			space = false
		}
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
	}
	return dst
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
