package routes

import (
	"sort"
	"strings"
	"unicode"
)

// LabelKey normalises a label, an answer or a token for matching: lower
// case, without surrounding spaces and punctuation. The harvest, training,
// eval and the gateway all match labels with it.
func LabelKey(s string) string {
	return strings.ToLower(strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }))
}

// ParseLabel finds the label an answer names, as the trainer does: the
// label equal to the answer, else the one it starts with (longest first),
// else "". Both sides are compared lower-cased, without surrounding spaces
// and punctuation.
func ParseLabel(answer string, labels []string) string {
	a := LabelKey(answer)
	sorted := append([]string{}, labels...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, l := range sorted {
		if LabelKey(l) == a {
			return l
		}
	}
	for _, l := range sorted {
		if k := LabelKey(l); k != "" && strings.HasPrefix(a, k) {
			return l
		}
	}
	return ""
}
