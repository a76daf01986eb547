package distill

import (
	"math"
	"strings"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/routes"
)

// ParseLabel finds the label an answer names: the label equal to the
// answer, else the one it starts with (longest first), else "" (see
// routes.ParseLabel, which the gateway uses too).
func ParseLabel(answer string, labels []string) string { return routes.ParseLabel(answer, labels) }

// LabelDist maps an answer onto the label set. With log-probabilities, the
// first position whose token is not blank spreads its top-k mass over the
// labels whose names start with each token; mass on other tokens and the
// mass outside the top-k go to datasets.OtherLabel. Without them, the
// parsed label gets probability 1.
func LabelDist(resp Response, labels []string) []datasets.LabelProb {
	probs := map[string]float64{}
	pos := -1
	for i, t := range resp.Tokens {
		if routes.LabelKey(t.Token) != "" {
			pos = i
			break
		}
	}
	if pos < 0 || len(resp.Tokens[pos].Top) == 0 {
		if l := ParseLabel(resp.Text, labels); l != "" {
			probs[l] = 1
		} else {
			probs[datasets.OtherLabel] = 1
		}
		return distList(probs, labels)
	}
	var listed float64
	for _, alt := range resp.Tokens[pos].Top {
		p := math.Exp(alt.Logprob)
		listed += p
		tk := routes.LabelKey(alt.Token)
		var match []string
		for _, l := range labels {
			if lk := routes.LabelKey(l); tk != "" && (strings.HasPrefix(lk, tk) || strings.HasPrefix(tk, lk)) {
				match = append(match, l)
			}
		}
		if len(match) == 0 {
			probs[datasets.OtherLabel] += p
			continue
		}
		for _, l := range match {
			probs[l] += p / float64(len(match))
		}
	}
	probs[datasets.OtherLabel] += math.Max(0, 1-listed)
	return distList(probs, labels)
}

// distList orders a distribution as the label set, then OtherLabel, and
// renormalises away rounding.
func distList(probs map[string]float64, labels []string) []datasets.LabelProb {
	var sum float64
	for _, p := range probs {
		sum += p
	}
	out := make([]datasets.LabelProb, 0, len(labels)+1)
	for _, l := range append(append([]string{}, labels...), datasets.OtherLabel) {
		out = append(out, datasets.LabelProb{Label: l, Prob: float32(probs[l] / sum)})
	}
	return out
}

// ArgmaxLabel is the most probable real label, or "" when OtherLabel wins.
func ArgmaxLabel(dist []datasets.LabelProb) string {
	best, bp := "", float32(-1)
	for _, lp := range dist {
		if lp.Prob > bp {
			best, bp = lp.Label, lp.Prob
		}
	}
	if best == datasets.OtherLabel {
		return ""
	}
	return best
}
