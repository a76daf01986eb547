package model

import "unicode/utf8"

// GPT-2's byte-level alphabet: every byte is shown as a printable character
// so that BPE never sees spaces or control bytes. Printable Latin-1 bytes map
// to themselves; the other 68 bytes map to U+0100 upwards, in byte order.
var (
	bpeByteToRune [256]rune
	bpeRuneToByte = map[rune]byte{}
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			bpeByteToRune[b] = rune(b)
		} else {
			bpeByteToRune[b] = 256 + n
			n++
		}
		bpeRuneToByte[bpeByteToRune[b]] = byte(b)
	}
}

// bpeByteLevelString maps raw bytes to their byte-level characters.
func bpeByteLevelString(raw string) string {
	buf := make([]byte, 0, 2*len(raw))
	for i := 0; i < len(raw); i++ {
		buf = utf8.AppendRune(buf, bpeByteToRune[raw[i]])
	}
	return string(buf)
}

// bpeByteLevelDecode maps a token written in byte-level characters back to
// its bytes. Like HuggingFace's ByteLevel decoder, a token holding any
// character outside the alphabet (an added token such as "<|im_end|>" is
// fine, one with a space is not) is kept as its own UTF-8 text.
func bpeByteLevelDecode(dst []byte, tok string) []byte {
	start := len(dst)
	for _, r := range tok {
		b, ok := bpeRuneToByte[r]
		if !ok {
			return append(dst[:start], tok...)
		}
		dst = append(dst, b)
	}
	return dst
}
