package model

import (
	"fmt"
	"regexp"
	"strings"
)

// pretokMatcher finds the delimiter matches of a Split pattern in s.
type pretokMatcher interface {
	matches(s string) [][2]int
}

// pretokMatcherFor picks the scanner for a known look-ahead pattern, Go's
// regexp for other regexes, or a literal matcher.
func pretokMatcherFor(p pretokPattern) (pretokMatcher, error) {
	switch {
	case p.String != nil:
		if *p.String == "" {
			return nil, fmt.Errorf("empty String pattern")
		}
		return pretokLiteral(*p.String), nil
	case p.Regex != nil:
		if sc := pretokKnownScanner(*p.Regex); sc != nil {
			return sc, nil
		}
		re, err := tokCompileRegex(*p.Regex)
		if err != nil {
			return nil, err
		}
		return pretokRegexp{re}, nil
	}
	return nil, fmt.Errorf("pattern has neither String nor Regex")
}

// matches makes a scanner a pretokMatcher: its matches tile the whole text.
func (sc pretokScanner) matches(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); {
		e := sc(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

type pretokLiteral string

func (l pretokLiteral) matches(s string) [][2]int {
	var out [][2]int
	for i := 0; ; {
		k := strings.Index(s[i:], string(l))
		if k < 0 {
			return out
		}
		out = append(out, [2]int{i + k, i + k + len(l)})
		i += k + len(l)
	}
}

type pretokRegexp struct{ re *regexp.Regexp }

func (r pretokRegexp) matches(s string) [][2]int {
	var out [][2]int
	for _, m := range r.re.FindAllStringIndex(s, -1) {
		out = append(out, [2]int{m[0], m[1]})
	}
	return out
}

// pretokBehavior is SplitDelimiterBehavior.
type pretokBehavior uint8

const (
	pretokIsolated pretokBehavior = iota
	pretokRemoved
	pretokMergedWithPrevious
	pretokMergedWithNext
	pretokContiguous
)

func pretokBehaviorOf(s string) (pretokBehavior, error) {
	switch strings.ToLower(s) {
	case "isolated", "":
		return pretokIsolated, nil
	case "removed":
		return pretokRemoved, nil
	case "mergedwithprevious":
		return pretokMergedWithPrevious, nil
	case "mergedwithnext":
		return pretokMergedWithNext, nil
	case "contiguous":
		return pretokContiguous, nil
	}
	return 0, fmt.Errorf("behavior %q is not supported", s)
}

// pretokSplit is the Split pre-tokenizer.
type pretokSplit struct {
	m        pretokMatcher
	behavior pretokBehavior
	invert   bool
}

func (p pretokSplit) apply(pieces []string, _ bool) []string {
	var out []string
	for _, s := range pieces {
		if sc, ok := p.m.(pretokScanner); ok && p.behavior == pretokIsolated && !p.invert {
			for i := 0; i < len(s); {
				e := sc(s, i)
				out = append(out, s[i:e])
				i = e
			}
			continue
		}
		out = pretokSplitBy(out, s, p.m.matches(s), p.behavior, p.invert)
	}
	return out
}

// pretokSplitBy splits s around the matches as HuggingFace's
// NormalizedString::split does.
func pretokSplitBy(out []string, s string, ms [][2]int, behavior pretokBehavior, invert bool) []string {
	type span struct {
		a, b  int
		delim bool
	}
	var spans []span
	prev := 0
	for _, m := range ms {
		if m[0] == m[1] {
			continue
		}
		if m[0] > prev {
			spans = append(spans, span{prev, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}
	var merged []span
	switch behavior {
	case pretokIsolated:
		merged = spans
	case pretokRemoved:
		for _, sp := range spans {
			if !sp.delim {
				merged = append(merged, sp)
			}
		}
	case pretokMergedWithPrevious:
		for _, sp := range spans {
			if sp.delim && len(merged) > 0 && !merged[len(merged)-1].delim {
				merged[len(merged)-1].b = sp.b
				merged[len(merged)-1].delim = true
				continue
			}
			merged = append(merged, sp)
		}
	case pretokMergedWithNext:
		for _, sp := range spans {
			if !sp.delim && len(merged) > 0 && merged[len(merged)-1].delim {
				merged[len(merged)-1].b = sp.b
				merged[len(merged)-1].delim = false
				continue
			}
			merged = append(merged, sp)
		}
	case pretokContiguous:
		for _, sp := range spans {
			if sp.delim && len(merged) > 0 && merged[len(merged)-1].delim {
				merged[len(merged)-1].b = sp.b
				continue
			}
			merged = append(merged, sp)
		}
	}
	for _, sp := range merged {
		out = append(out, s[sp.a:sp.b])
	}
	return out
}
