package routes

import (
	"sort"
	"strings"
	"unicode"
)

// The label matching below is a copy of distill.ParseLabel (routes must not
// depend on the trainer); TestParseLabel holds both to the same cases.

// labelKey normalises a label or an answer for matching: lower case,
// without surrounding spaces and punctuation.
func labelKey(s string) string {
	return strings.ToLower(strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }))
}

// ParseLabel finds the label an answer names, as the trainer does: the
// label equal to the answer, else the one it starts with (longest first),
// else "". Both sides are compared lower-cased, without surrounding spaces
// and punctuation.
func ParseLabel(answer string, labels []string) string {
	a := labelKey(answer)
	sorted := append([]string{}, labels...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, l := range sorted {
		if labelKey(l) == a {
			return l
		}
	}
	for _, l := range sorted {
		if k := labelKey(l); k != "" && strings.HasPrefix(a, k) {
			return l
		}
	}
	return ""
}
