package model

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pretokStep is one pre-tokenizer of tokenizer.json: it splits each piece of
// a section's (normalised) text further. first says that pieces[0] starts the
// whole input text (Metaspace's prepend_scheme "first" needs it).
type pretokStep interface {
	apply(pieces []string, first bool) []string
}

// pretokConfig is the union of the pre-tokenizer fields we read.
type pretokConfig struct {
	Type           string            `json:"type"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Pattern        *pretokPattern    `json:"pattern"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Individual     bool              `json:"individual_digits"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	Split          *bool             `json:"split"`
}

// pretokPattern is a Split or Replace pattern: a literal or a regex.
type pretokPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// pretokBuild turns a pre_tokenizer object into steps. byteLevel reports
// whether a ByteLevel pre-tokenizer is present (the BPE model then works on
// bytes).
func pretokBuild(raw json.RawMessage) (steps []pretokStep, byteLevel bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false, nil
	}
	var c pretokConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		for _, sub := range c.Pretokenizers {
			s, bl, err := pretokBuild(sub)
			if err != nil {
				return nil, false, err
			}
			if byteLevel && len(s) > 0 {
				// The steps after ByteLevel would see byte-level characters.
				return nil, false, fmt.Errorf("pre_tokenizer: steps after ByteLevel are not supported")
			}
			steps = append(steps, s...)
			byteLevel = byteLevel || bl
		}
		return steps, byteLevel, nil
	case "Split":
		if c.Pattern == nil {
			return nil, false, fmt.Errorf("pre_tokenizer Split: no pattern")
		}
		m, err := pretokMatcherFor(*c.Pattern)
		if err != nil {
			return nil, false, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		b, err := pretokBehaviorOf(c.Behavior)
		if err != nil {
			return nil, false, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		return []pretokStep{pretokSplit{m: m, behavior: b, invert: c.Invert}}, false, nil
	case "ByteLevel":
		st := pretokByteLevel{
			addPrefixSpace: c.AddPrefixSpace != nil && *c.AddPrefixSpace,
			useRegex:       c.UseRegex == nil || *c.UseRegex,
		}
		if !st.addPrefixSpace && !st.useRegex {
			return nil, true, nil // only the byte mapping, which the model does
		}
		return []pretokStep{st}, true, nil
	case "Digits":
		return []pretokStep{pretokDigits{individual: c.Individual}}, false, nil
	case "Metaspace":
		st, err := pretokMetaspaceOf(c)
		if err != nil {
			return nil, false, err
		}
		return []pretokStep{st}, false, nil
	}
	return nil, false, fmt.Errorf("pre_tokenizer type %q is not supported", c.Type)
}

// pretokByteLevel is the ByteLevel pre-tokenizer. The byte-to-character
// mapping itself happens in the BPE model, which works on raw bytes.
type pretokByteLevel struct {
	addPrefixSpace, useRegex bool
}

func (p pretokByteLevel) apply(pieces []string, _ bool) []string {
	if !p.addPrefixSpace && !p.useRegex {
		return pieces
	}
	var out []string
	for _, s := range pieces {
		if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
			s = " " + s
		}
		if !p.useRegex {
			out = append(out, s)
			continue
		}
		for i := 0; i < len(s); {
			e := pretokScanGPT2(s, i)
			out = append(out, s[i:e])
			i = e
		}
	}
	return out
}

// pretokDigits isolates digits: each one, or each run.
type pretokDigits struct{ individual bool }

func (p pretokDigits) apply(pieces []string, _ bool) []string {
	var out []string
	for _, s := range pieces {
		start := 0
		for i := 0; i < len(s); {
			r, w := utf8.DecodeRuneInString(s[i:])
			if !unicode.IsNumber(r) {
				i += w
				continue
			}
			j := i + w
			if !p.individual {
				for j < len(s) {
					r2, w2 := utf8.DecodeRuneInString(s[j:])
					if !unicode.IsNumber(r2) {
						break
					}
					j += w2
				}
			}
			if i > start {
				out = append(out, s[start:i])
			}
			out = append(out, s[i:j])
			start, i = j, j
		}
		if start < len(s) {
			out = append(out, s[start:])
		}
	}
	return out
}

// pretokMetaspace is the SentencePiece-style Metaspace pre-tokenizer:
// spaces become the replacement character (▁), which is prepended to the
// text, and words are split before each replacement character.
type pretokMetaspace struct {
	replacement string
	prepend     string // "always", "first" or "never"
	split       bool
}

func pretokMetaspaceOf(c pretokConfig) (pretokMetaspace, error) {
	m := pretokMetaspace{replacement: c.Replacement, prepend: c.PrependScheme, split: c.Split == nil || *c.Split}
	if m.replacement == "" {
		m.replacement = "▁"
	}
	if m.prepend == "" {
		m.prepend = "always"
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			m.prepend = "never"
		}
	}
	switch m.prepend {
	case "always", "first", "never":
	default:
		return m, fmt.Errorf("pre_tokenizer Metaspace: prepend_scheme %q is not supported", m.prepend)
	}
	return m, nil
}

func (p pretokMetaspace) apply(pieces []string, first bool) []string {
	var out []string
	for k, s := range pieces {
		s = strings.ReplaceAll(s, " ", p.replacement)
		if (p.prepend == "always" || (p.prepend == "first" && first && k == 0)) && !strings.HasPrefix(s, p.replacement) {
			s = p.replacement + s
		}
		if !p.split {
			out = append(out, s)
			continue
		}
		out = pretokSplitBy(out, s, pretokLiteral(p.replacement).matches(s), pretokMergedWithNext, false)
	}
	return out
}
