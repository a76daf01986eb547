package model

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Fast readers for the two big parts of tokenizer.json, the vocab object
// and the merges array (over 150,000 entries each): encoding/json's
// reflection makes loading several times slower. Input is already known to
// be valid JSON (encoding/json checked the whole file).

// tokJSON scans a JSON value held in b.
type tokJSON struct {
	b []byte
	i int
}

func (s *tokJSON) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\r' || s.b[s.i] == '\t') {
		s.i++
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *tokJSON) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *tokJSON) expect(c byte) error {
	if s.peek() != c {
		return fmt.Errorf("offset %d: want %q", s.i, c)
	}
	s.i++
	return nil
}

// str reads a string; escaped ones go through encoding/json.
func (s *tokJSON) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start, escaped := s.i, false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c == '"':
			s.i++
			if !escaped && utf8.Valid(s.b[start:s.i-1]) {
				return string(s.b[start : s.i-1]), nil
			}
			var out string
			err := json.Unmarshal(s.b[start-1:s.i], &out)
			return out, err
		}
		s.i++
	}
	return "", fmt.Errorf("offset %d: unterminated string", start)
}

// int reads an integer.
func (s *tokJSON) int() (int, error) {
	s.ws()
	start := s.i
	for s.i < len(s.b) && (s.b[s.i] == '-' || (s.b[s.i] >= '0' && s.b[s.i] <= '9')) {
		s.i++
	}
	n, err := strconv.Atoi(string(s.b[start:s.i]))
	if err != nil {
		return 0, fmt.Errorf("offset %d: %w", start, err)
	}
	return n, nil
}

// list reads a bracketed, comma-separated sequence (an array with '[' ']',
// an object with '{' '}'), calling item to read each element or member.
func (s *tokJSON) list(open, close byte, item func() error) error {
	if err := s.expect(open); err != nil {
		return err
	}
	if s.peek() == close {
		s.i++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case close:
			s.i++
			return nil
		default:
			return fmt.Errorf("offset %d: want ',' or %q", s.i, close)
		}
	}
}

// tokParseVocab reads the vocab object {"token": id, ...}.
func tokParseVocab(raw json.RawMessage) (map[string]int, error) {
	s := &tokJSON{b: raw}
	if s.peek() == 'n' {
		return nil, nil // null
	}
	vocab := make(map[string]int, len(raw)/16)
	err := s.list('{', '}', func() error {
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		v, err := s.int()
		vocab[k] = v
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("model vocab: %w", err)
	}
	return vocab, nil
}

// tokParseMerges reads merges as "a b" strings (split at the first space)
// or as [a, b] pairs (tokenizers 0.20+, which allows spaces in tokens).
func tokParseMerges(raw json.RawMessage) ([][2]string, error) {
	s := &tokJSON{b: raw}
	if c := s.peek(); c == 0 || c == 'n' {
		return nil, nil // absent or null
	}
	var merges [][2]string
	err := s.list('[', ']', func() error {
		if s.peek() == '[' {
			var pair []string
			err := s.list('[', ']', func() error {
				p, err := s.str()
				pair = append(pair, p)
				return err
			})
			if err == nil && len(pair) != 2 {
				err = fmt.Errorf("entry %d has %d parts", len(merges), len(pair))
			}
			if err == nil {
				merges = append(merges, [2]string{pair[0], pair[1]})
			}
			return err
		}
		m, err := s.str()
		if err != nil {
			return err
		}
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return fmt.Errorf("entry %d %q has no space", len(merges), m)
		}
		merges = append(merges, [2]string{a, b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("model merges: %w", err)
	}
	return merges, nil
}
