package datasets

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small allocation-free JSON validator and string
// decoder for the JSONL hot path: encoding/json's Valid plus Unmarshal of
// each wanted string cost about twice as much. Both agree with
// encoding/json (FuzzReadJSONLRow checks it); UTF-8 validity is checked
// separately, before.

// maxJSONDepth matches encoding/json's nesting limit.
const maxJSONDepth = 10000

// jsonValid reports whether b holds exactly one JSON value, surrounded by
// optional white space, as json.Valid does.
func jsonValid(b []byte) bool {
	i, ok := validValue(b, skipSpace(b, 0), 0)
	return ok && skipSpace(b, i) == len(b)
}

// validValue checks the value starting at b[i] and returns the index just past it.
func validValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return validString(b, i)
	case '{', '[':
		if depth++; depth > maxJSONDepth {
			return i, false
		}
		obj := b[i] == '{'
		end := byte(']')
		if obj {
			end = '}'
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == end {
			return i + 1, true
		}
		for {
			var ok bool
			if obj {
				if i >= len(b) || b[i] != '"' {
					return i, false
				}
				if i, ok = validString(b, i); !ok {
					return i, false
				}
				if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
					return i, false
				}
				i = skipSpace(b, i+1)
			}
			if i, ok = validValue(b, i, depth); !ok {
				return i, false
			}
			if i = skipSpace(b, i); i >= len(b) {
				return i, false
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case end:
				return i + 1, true
			default:
				return i, false
			}
		}
	case 't':
		return validLiteral(b, i, "true")
	case 'f':
		return validLiteral(b, i, "false")
	case 'n':
		return validLiteral(b, i, "null")
	default:
		return validNumber(b, i)
	}
}

func validLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

// validString checks the string whose opening quote is b[i].
func validString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return j, false
		case c == '\\':
			j++
			if j >= len(b) {
				return j, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-j < 5 || hex4(b[j+1:j+5]) < 0 {
					return j, false
				}
				j += 4
			default:
				return j, false
			}
		}
	}
	return len(b), false
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func validNumber(b []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return i, false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(i + 1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

// hex4 decodes 4 hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// jsonString decodes a raw JSON string (valid, quotes included) as
// encoding/json does, including its replacement of unpaired surrogates by
// U+FFFD.
func jsonString(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	first := bytes.IndexByte(inner, '\\')
	if first < 0 {
		return string(inner)
	}
	buf := make([]byte, first, len(inner))
	copy(buf, inner)
	for i := first; i < len(inner); {
		if inner[i] != '\\' {
			j := bytes.IndexByte(inner[i:], '\\')
			if j < 0 {
				j = len(inner) - i
			}
			buf = append(buf, inner[i:i+j]...)
			i += j
			continue
		}
		c := inner[i+1]
		i += 2
		switch c {
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r := hex4(inner[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if len(inner)-i >= 6 && inner[i] == '\\' && inner[i+1] == 'u' {
					r2 = hex4(inner[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default: // '"', '\\', '/'
			buf = append(buf, c)
		}
	}
	return string(buf)
}
