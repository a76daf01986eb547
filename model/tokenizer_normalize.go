package model

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// tokNormalizer rewrites a section of text before pre-tokenization.
type tokNormalizer func(string) string

// tokNormalizerConfig is the union of the normalizer fields we read.
type tokNormalizerConfig struct {
	Type        string            `json:"type"`
	Normalizers []json.RawMessage `json:"normalizers"`
	Pattern     *pretokPattern    `json:"pattern"`
	Content     string            `json:"content"`
	Prepend     string            `json:"prepend"`
	Left        *bool             `json:"left"`
	Right       *bool             `json:"right"`
}

// tokBuildNormalizer turns a normalizer object into a function; nil means
// the identity.
func tokBuildNormalizer(raw json.RawMessage) (tokNormalizer, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c tokNormalizerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		var fs []tokNormalizer
		for _, sub := range c.Normalizers {
			f, err := tokBuildNormalizer(sub)
			if err != nil {
				return nil, err
			}
			if f != nil {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			return nil, nil
		}
		return func(s string) string {
			for _, f := range fs {
				s = f(s)
			}
			return s
		}, nil
	case "NFC":
		return tokNormForm(norm.NFC), nil
	case "NFD":
		return tokNormForm(norm.NFD), nil
	case "NFKC":
		return tokNormForm(norm.NFKC), nil
	case "NFKD":
		return tokNormForm(norm.NFKD), nil
	case "Lowercase":
		return strings.ToLower, nil
	case "StripAccents":
		return tokStripAccents, nil
	case "Strip":
		left, right := c.Left == nil || *c.Left, c.Right == nil || *c.Right
		return func(s string) string {
			if left {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if right {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s
		}, nil
	case "Prepend":
		p := c.Prepend
		return func(s string) string {
			if s == "" {
				return s
			}
			return p + s
		}, nil
	case "Replace":
		if c.Pattern == nil {
			return nil, fmt.Errorf("normalizer Replace: no pattern")
		}
		content := c.Content
		if c.Pattern.String != nil {
			old := *c.Pattern.String
			return func(s string) string { return strings.ReplaceAll(s, old, content) }, nil
		}
		if c.Pattern.Regex == nil {
			return nil, fmt.Errorf("normalizer Replace: pattern has neither String nor Regex")
		}
		re, err := tokCompileRegex(*c.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		return func(s string) string { return re.ReplaceAllLiteralString(s, content) }, nil
	}
	return nil, fmt.Errorf("normalizer type %q is not supported", c.Type)
}

// tokNormForm applies a Unicode normal form, skipping pure ASCII text
// (already normal in every form).
func tokNormForm(f norm.Form) tokNormalizer {
	return func(s string) string {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return f.String(s)
			}
		}
		return s
	}
}

// tokStripAccents removes combining marks (category Mn), as HuggingFace's
// StripAccents does (it is meant to follow NFD).
func tokStripAccents(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, s)
}
