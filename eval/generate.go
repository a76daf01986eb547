package eval

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

// GenInput holds parallel slices, one entry per example.
type GenInput struct {
	// Ref is the reference text (the teacher's answer, or a gold text).
	Ref []string
	// Pred is the model's answer.
	Pred []string
	// LogProbs (optional) are, per example, the model's natural-log
	// probabilities of each reference token (teacher forcing), for
	// perplexity.
	LogProbs [][]float64
}

// GenMetrics are a model's generation metrics against a reference: means
// over the examples of the per-example scores.
type GenMetrics struct {
	N          int     `json:"n" doc:"Examples scored."`
	ExactMatch float64 `json:"exact_match" doc:"Share of answers equal to the reference once runs of white space are one space and ends trimmed (case-sensitive)."`
	TokenF1    float64 `json:"token_f1" doc:"Mean SQuAD token F1: lower-cased, ASCII punctuation and the articles a/an/the removed, bag-of-words overlap."`
	RougeL     float64 `json:"rouge_l" doc:"Mean ROUGE-L F-measure (beta 1): longest common subsequence of white-space tokens, case-sensitive."`
	// Perplexity is exp of the mean negative log-probability over all
	// tokens of all examples (token-weighted); null without log-probs.
	Perplexity *float64 `json:"perplexity" doc:"exp(mean NLL) over all reference tokens pooled; null without log-probabilities."`
	Tokens     int      `json:"perplexity_tokens" doc:"Tokens the perplexity is computed over."`
}

// ScoreGeneration computes the generation metrics.
func ScoreGeneration(in GenInput) (GenMetrics, error) {
	n := len(in.Ref)
	if len(in.Pred) != n {
		return GenMetrics{}, fmt.Errorf("eval: %d answers for %d references", len(in.Pred), n)
	}
	if in.LogProbs != nil && len(in.LogProbs) != n {
		return GenMetrics{}, fmt.Errorf("eval: %d log-probability rows for %d examples", len(in.LogProbs), n)
	}
	m := GenMetrics{N: n}
	for i := range in.Ref {
		if ExactMatch(in.Pred[i], in.Ref[i]) {
			m.ExactMatch++
		}
		m.TokenF1 += TokenF1(in.Pred[i], in.Ref[i])
		m.RougeL += RougeL(in.Pred[i], in.Ref[i])
	}
	if n > 0 {
		m.ExactMatch /= float64(n)
		m.TokenF1 /= float64(n)
		m.RougeL /= float64(n)
	}
	if in.LogProbs != nil {
		var all []float64
		for i, row := range in.LogProbs {
			for j, lp := range row {
				if math.IsNaN(lp) || lp > 1e-4 {
					return GenMetrics{}, fmt.Errorf("eval: log-probability %v of example %d token %d is not <= 0", lp, i, j)
				}
			}
			all = append(all, row...)
		}
		m.Tokens = len(all)
		if ppl := Perplexity(all); len(all) > 0 && !math.IsInf(ppl, 0) {
			m.Perplexity = ptr(ppl) // null on overflow too: JSON has no infinity
		}
	}
	return m, nil
}

// ExactMatch reports whether two texts are equal once runs of white space
// are replaced by one space and the ends trimmed. Case matters.
func ExactMatch(pred, ref string) bool {
	return strings.Join(strings.Fields(pred), " ") == strings.Join(strings.Fields(ref), " ")
}

// squadPunct is Python's string.punctuation, which SQuAD's evaluation
// script removes.
const squadPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// squadTokens normalises as the SQuAD v1.1/v2.0 evaluation script: lower
// case, remove punctuation (characters deleted, not replaced by spaces),
// remove the articles a, an, the as whole words, and split on white space.
func squadTokens(s string) []string {
	s = strings.ToLower(s)
	s = strings.Map(func(r rune) rune {
		if r < 128 && strings.ContainsRune(squadPunct, r) {
			return -1
		}
		return r
	}, s)
	return strings.Fields(dropArticles(s))
}

// dropArticles replaces the words a, an and the by a space, as Python's
// re.sub(r"\b(a|an|the)\b", " ", s): a word is a maximal run of word
// characters (letters, numbers, underscore).
func dropArticles(s string) string {
	word := func(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }
	var b strings.Builder
	rs := []rune(s)
	for i := 0; i < len(rs); {
		if !word(rs[i]) {
			b.WriteRune(rs[i])
			i++
			continue
		}
		j := i
		for j < len(rs) && word(rs[j]) {
			j++
		}
		switch w := string(rs[i:j]); w {
		case "a", "an", "the":
			b.WriteByte(' ')
		default:
			b.WriteString(w)
		}
		i = j
	}
	return b.String()
}

// TokenF1 is SQuAD's token F1 of an answer against a reference: the
// harmonic mean of precision and recall of their bag-of-words overlap
// after squad normalisation (lower case, punctuation and articles
// removed). When either side has no tokens it is 1 if both have none, else
// 0.
func TokenF1(pred, ref string) float64 {
	p, r := squadTokens(pred), squadTokens(ref)
	if len(p) == 0 || len(r) == 0 {
		if len(p) == len(r) {
			return 1
		}
		return 0
	}
	counts := map[string]int{}
	for _, w := range r {
		counts[w]++
	}
	same := 0
	for _, w := range p {
		if counts[w] > 0 {
			counts[w]--
			same++
		}
	}
	if same == 0 {
		return 0
	}
	prec := float64(same) / float64(len(p))
	rec := float64(same) / float64(len(r))
	return 2 * prec * rec / (prec + rec)
}

// RougeL is the ROUGE-L F-measure (beta 1) of an answer against a
// reference: with l the length of the longest common subsequence of their
// white-space tokens (case-sensitive), P = l/len(pred), R = l/len(ref),
// F = 2PR/(P+R). Two empty texts score 1; one empty text scores 0.
func RougeL(pred, ref string) float64 {
	p, r := strings.Fields(pred), strings.Fields(ref)
	if len(p) == 0 || len(r) == 0 {
		if len(p) == len(r) {
			return 1
		}
		return 0
	}
	l := lcs(p, r)
	if l == 0 {
		return 0
	}
	prec := float64(l) / float64(len(p))
	rec := float64(l) / float64(len(r))
	return 2 * prec * rec / (prec + rec)
}

// lcs is the length of the longest common subsequence, in O(len(a)·len(b))
// time and O(len(b)) memory.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Perplexity is exp of the mean negative log-probability of the tokens
// (natural log). It is NaN for no tokens.
func Perplexity(logprobs []float64) float64 {
	if len(logprobs) == 0 {
		return math.NaN()
	}
	var nll float64
	for _, lp := range logprobs {
		nll -= lp
	}
	return math.Exp(nll / float64(len(logprobs)))
}
