package model

import (
	"encoding/json"
	"fmt"
	"strings"
)

// tokDecoder turns token strings back into bytes. Decoding is split in two:
// a per-token part (byte-level mapping, ▁ to space, <0xNN> to a byte), which
// gives TokenBytes, and a strip of leading/trailing characters applied once
// to the whole output (SentencePiece's dropped prefix space), which Decode
// adds on top.
type tokDecoder struct {
	steps      []func(string) string
	stripChar  string // character stripped from the whole output
	stripStart int    // at most this many from the start
	stripStop  int    // at most this many from the end
}

type tokDecoderConfig struct {
	Type           string            `json:"type"`
	Decoders       []json.RawMessage `json:"decoders"`
	Pattern        *pretokPattern    `json:"pattern"`
	Content        string            `json:"content"`
	Start          int               `json:"start"`
	Stop           int               `json:"stop"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
}

// tokBuildDecoder reads a decoder object. A null decoder keeps tokens as
// they are.
func tokBuildDecoder(raw json.RawMessage) (*tokDecoder, error) {
	d := &tokDecoder{}
	if len(raw) == 0 || string(raw) == "null" {
		return d, nil
	}
	return d, d.add(raw, false)
}

// add appends one decoder; fused says a Fuse came before (Strip then acts on
// the whole output rather than on each token).
func (d *tokDecoder) add(raw json.RawMessage, fused bool) error {
	var c tokDecoderConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("decoder: %w", err)
	}
	switch c.Type {
	case "Sequence":
		for _, sub := range c.Decoders {
			if err := d.add(sub, fused); err != nil {
				return err
			}
			var t struct{ Type string }
			_ = json.Unmarshal(sub, &t)
			fused = fused || t.Type == "Fuse"
		}
	case "ByteLevel":
		d.steps = append(d.steps, func(tok string) string { return string(bpeByteLevelDecode(nil, tok)) })
	case "Fuse":
		// Tokens are always concatenated.
	case "ByteFallback":
		d.steps = append(d.steps, tokByteFallbackDecode)
	case "Replace":
		if c.Pattern == nil || c.Pattern.String == nil {
			return fmt.Errorf("decoder Replace: only String patterns are supported")
		}
		old, content := *c.Pattern.String, c.Content
		d.steps = append(d.steps, func(tok string) string { return strings.ReplaceAll(tok, old, content) })
	case "Strip":
		if !fused {
			start, stop, content := c.Start, c.Stop, c.Content
			d.steps = append(d.steps, func(tok string) string { return tokStrip(tok, content, start, stop) })
			return nil
		}
		d.stripChar, d.stripStart, d.stripStop = c.Content, c.Start, c.Stop
	case "Metaspace":
		rep := c.Replacement
		if rep == "" {
			rep = "▁"
		}
		d.steps = append(d.steps, func(tok string) string { return strings.ReplaceAll(tok, rep, " ") })
		// The space the pre-tokenizer prepended is dropped again, unless
		// it never prepends (prepend_scheme "never", or the older
		// add_prefix_space false).
		scheme := c.PrependScheme
		if scheme == "" && c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			scheme = "never"
		}
		if scheme != "never" {
			d.stripChar, d.stripStart = " ", 1
		}
	default:
		return fmt.Errorf("decoder type %q is not supported", c.Type)
	}
	return nil
}

// tokenBytes decodes one token on its own.
func (d *tokDecoder) tokenBytes(tok string) string {
	for _, f := range d.steps {
		tok = f(tok)
	}
	return tok
}

// finish applies the whole-output strip.
func (d *tokDecoder) finish(out []byte) []byte {
	if d.stripChar == "" {
		return out
	}
	s := tokStrip(string(out), d.stripChar, d.stripStart, d.stripStop)
	return out[:copy(out, s)]
}

// tokStrip removes up to start leading and stop trailing copies of c.
func tokStrip(s, c string, start, stop int) string {
	for ; start > 0 && strings.HasPrefix(s, c); start-- {
		s = s[len(c):]
	}
	for ; stop > 0 && strings.HasSuffix(s, c); stop-- {
		s = s[:len(s)-len(c)]
	}
	return s
}

// tokByteFallbackDecode turns a <0xNN> token into its byte.
func tokByteFallbackDecode(tok string) string {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return tok
	}
	hex := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	h, ok1 := hex(tok[3])
	l, ok2 := hex(tok[4])
	if !ok1 || !ok2 {
		return tok
	}
	return string([]byte{h<<4 | l})
}
