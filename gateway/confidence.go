package gateway

import (
	"math"
	"strings"
	"unicode"

	"github.com/distillery/distillery/datasets"
)

// labelKey normalises a label or a token for matching: lower case, without
// surrounding spaces and punctuation (as routes.ParseLabel and the
// harvest's label distribution do).
func labelKey(s string) string {
	return strings.ToLower(strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }))
}

// labelDist is the answer's distribution over labels, laid out as the
// harvest's soft labels and eval's PredDist: the labels in order, then the
// mass on no label (datasets.OtherLabel). At the first answer token whose
// text is not blank, each top alternative's probability goes to the labels
// its text starts (or is the start of), split evenly; alternatives naming no
// label and the mass outside the list go to OtherLabel. It is the rule of
// distill.LabelDist, so the gateway's confidence is eval's. Without log
// probabilities the parsed label gets 1.
func labelDist(toks []Token, text string, labels []string, parse func(string) string) []float64 {
	out := make([]float64, len(labels)+1)
	pos := -1
	for i, t := range toks {
		if labelKey(t.Text) != "" {
			pos = i
			break
		}
	}
	if pos < 0 || len(toks[pos].Top) == 0 {
		l := parse(text)
		for i, lab := range labels {
			if lab == l {
				out[i] = 1
				return out
			}
		}
		out[len(labels)] = 1
		return out
	}
	var listed float64
	keys := make([]string, len(labels))
	for i, l := range labels {
		keys[i] = labelKey(l)
	}
	for _, alt := range toks[pos].Top {
		p := math.Exp(alt.Logprob)
		listed += p
		tk := labelKey(alt.Text)
		var match []int
		for i, lk := range keys {
			if tk != "" && (strings.HasPrefix(lk, tk) || strings.HasPrefix(tk, lk)) {
				match = append(match, i)
			}
		}
		if len(match) == 0 {
			out[len(labels)] += p
			continue
		}
		for _, i := range match {
			out[i] += p / float64(len(match))
		}
	}
	out[len(labels)] += math.Max(0, 1-listed)
	var sum float64
	for _, p := range out {
		sum += p
	}
	if sum > 0 {
		for i := range out {
			out[i] /= sum
		}
	}
	return out
}

// labelConfidence is eval.Confidence of a label distribution: the largest
// label probability after renormalising (mass on no label lowers it).
func labelConfidence(dist []float64) float64 {
	best := 0.0
	for _, p := range dist[:len(dist)-1] {
		best = max(best, p)
	}
	return best
}

// textConfidence is the confidence of a free-text answer: the geometric
// mean of its tokens' probabilities (exp of the mean log probability); 0
// without tokens.
func textConfidence(toks []Token) float64 {
	if len(toks) == 0 {
		return 0
	}
	var s float64
	for _, t := range toks {
		s += max(t.Logprob, minLogprob)
	}
	return math.Exp(s / float64(len(toks)))
}

// softLabelDist converts a distribution to the harvest's schema.
func softLabelDist(dist []float64, labels []string) []datasets.LabelProb {
	out := make([]datasets.LabelProb, 0, len(dist))
	for i, p := range dist {
		l := datasets.OtherLabel
		if i < len(labels) {
			l = labels[i]
		}
		out = append(out, datasets.LabelProb{Label: l, Prob: float32(p)})
	}
	return out
}
