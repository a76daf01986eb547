package gateway

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/distillery/distillery/openai"
)

// The complexity score (1-5) of a request picks its tier. It comes from a
// multinomial logistic regression over hashed features of the request's
// text (word unigrams and bigrams, length buckets and task markers),
// trained on gateway/testdata/complexity.jsonl by
// `go test ./gateway -run TestComplexityModel -update` and embedded here.
// With routing.classifier: features, hand-set rules over the same markers
// decide instead. A request for a routed model (one with routes.json) is
// the student's own task: its score is lowered by one.

// complexityDim is the number of hashed feature buckets.
const complexityDim = 2048

// complexityClasses are the scores 1..5.
const complexityClasses = 5

//go:embed complexity_model.json
var complexityModelJSON []byte

// complexityModel is the trained classifier: W[class][feature], then bias.
type complexityModel struct {
	Dim  int         `json:"dim"`
	W    [][]float64 `json:"w"`
	Bias []float64   `json:"bias"`
}

func loadComplexityModel() (*complexityModel, error) {
	var m complexityModel
	if err := json.Unmarshal(complexityModelJSON, &m); err != nil {
		return nil, fmt.Errorf("complexity model: %w", err)
	}
	if m.Dim != complexityDim || len(m.W) != complexityClasses || len(m.Bias) != complexityClasses {
		return nil, fmt.Errorf("complexity model: want %d classes over %d features", complexityClasses, complexityDim)
	}
	return &m, nil
}

// markers are phrases that signal harder tasks, by group.
var markers = map[string][]string{
	"reason": {"why", "explain", "prove", "derive", "step by step", "reason", "analyze", "analyse", "evaluate", "compare", "trade-off", "tradeoff", "pros and cons", "critique", "justify"},
	"create": {"write", "draft", "compose", "design", "architect", "plan", "propose", "story", "essay", "poem"},
	"code":   {"```", "func ", "def ", "class ", "select ", "stack trace", "exception", "compile", "regex", "algorithm", "complexity", "refactor", "debug", "implement"},
	"math":   {"integral", "derivative", "equation", "theorem", "probability", "matrix", "optimi", "calculate", "solve"},
	"simple": {"classify", "sentiment", "label", "yes or no", "true or false", "translate", "spell", "capital of", "what is the", "which category", "positive or negative"},
	"multi":  {"and then", "also", "additionally", "first,", "second,", "finally", "each of", "for every", "list all", "in detail", "comprehensive", "thorough"},
}

// sparse is a hashed feature vector: the buckets set and their values.
type sparse struct {
	idx []int
	val []float64
}

// complexityFeatures hashes a text's features into buckets.
func complexityFeatures(text string, nMessages int, tools bool) sparse {
	var dense [complexityDim]float64
	var f sparse
	add := func(s string, v float64) {
		h := uint32(2166136261) // FNV-1a, inline: no allocation
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
		i := int(h % complexityDim)
		if dense[i] == 0 {
			f.idx = append(f.idx, i)
		}
		dense[i] += v
	}
	lower := strings.ToLower(text)
	words := strings.FieldsFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '\'' })
	n := float64(len(words))
	norm := 1 / math.Sqrt(max(n, 1))
	for i, w := range words {
		add("w:"+w, norm)
		if i > 0 {
			add("b:"+words[i-1]+" "+w, norm)
		}
	}
	add(fmt.Sprintf("len:%d", int(math.Log2(n+1))), 1)
	add(fmt.Sprintf("lines:%d", min(strings.Count(text, "\n"), 8)), 1)
	add(fmt.Sprintf("q:%d", min(strings.Count(text, "?"), 3)), 1)
	add(fmt.Sprintf("msgs:%d", min(nMessages, 6)), 1)
	if tools {
		add("tools", 1)
	}
	for g, ms := range markers {
		c := 0
		for _, m := range ms {
			if strings.Contains(lower, m) {
				c++
			}
		}
		if c > 0 {
			add(fmt.Sprintf("m:%s:%d", g, min(c, 3)), 1)
		}
	}
	add("bias", 1)
	f.val = make([]float64, len(f.idx))
	for k, i := range f.idx {
		f.val[k] = dense[i]
	}
	return f
}

// probs is the model's distribution over scores 1..5.
func (m *complexityModel) probs(f sparse) []float64 {
	z := make([]float64, complexityClasses)
	for c := range z {
		z[c] = m.Bias[c]
		w := m.W[c]
		for k, i := range f.idx {
			z[c] += w[i] * f.val[k]
		}
	}
	mx := z[0]
	for _, v := range z {
		mx = max(mx, v)
	}
	var s float64
	for c := range z {
		z[c] = math.Exp(z[c] - mx)
		s += z[c]
	}
	for c := range z {
		z[c] /= s
	}
	return z
}

// score is the rounded expected score.
func (m *complexityModel) score(f sparse) int {
	p := m.probs(f)
	var e float64
	for c, v := range p {
		e += float64(c+1) * v
	}
	return min(5, max(1, int(math.Round(e))))
}

// trainComplexity fits the model by full-batch gradient descent with L2;
// deterministic.
func trainComplexity(xs []sparse, ys []int) *complexityModel {
	const epochs, lr, l2 = 300, 2.0, 1e-4
	m := &complexityModel{Dim: complexityDim, W: make([][]float64, complexityClasses), Bias: make([]float64, complexityClasses)}
	for c := range m.W {
		m.W[c] = make([]float64, complexityDim)
	}
	n := float64(len(xs))
	for range epochs {
		gw := make([][]float64, complexityClasses)
		for c := range gw {
			gw[c] = make([]float64, complexityDim)
		}
		gb := make([]float64, complexityClasses)
		for k, f := range xs {
			p := m.probs(f)
			for c := range p {
				// Soft targets: the labelled score, with a little mass on its
				// neighbours (scores are ordinal).
				t := 0.0
				switch d := c + 1 - ys[k]; {
				case d == 0:
					t = 0.8
				case d == 1 || d == -1:
					t = 0.1
				}
				g := p[c] - t
				gb[c] += g
				for k, i := range f.idx {
					gw[c][i] += g * f.val[k]
				}
			}
		}
		for c := range m.W {
			m.Bias[c] -= lr * gb[c] / n
			for i := range m.W[c] {
				m.W[c][i] -= lr * (gw[c][i]/n + l2*m.W[c][i])
			}
		}
	}
	return m
}

// classifier scores requests.
type classifier struct {
	m        *complexityModel // nil: features only
	features bool
}

func newClassifier(kind string) (*classifier, error) {
	if kind == "features" {
		return &classifier{features: true}, nil
	}
	m, err := loadComplexityModel()
	if err != nil {
		return nil, err
	}
	return &classifier{m: m}, nil
}

// scoreText scores a text (nMessages messages, tools or not).
func (c *classifier) scoreText(text string, nMessages int, tools bool) int {
	if c.features {
		return featureScore(text, tools)
	}
	return c.m.score(complexityFeatures(text, nMessages, tools))
}

// scoreRequest scores a chat request; routed says it targets a student's
// own task (routes.json), which lowers the score by one.
func (c *classifier) scoreRequest(req *openai.ChatCompletionRequest, routed bool) int {
	text := inputText(req.Messages)
	if routed {
		// The routed input is the task text itself: score just the last
		// user message.
		for i := len(req.Messages) - 1; i >= 0; i-- {
			if req.Messages[i].Role == openai.RoleUser {
				text = req.Messages[i].Content.String()
				break
			}
		}
	}
	s := c.scoreText(text, len(req.Messages), isSet(req.Tools))
	if routed {
		s = max(1, s-1)
	}
	return s
}

// featureScore is the hand-set rule: 1, plus one per long input (>40
// words, >200 words), reasoning or creation markers, code or maths, and
// tools; simple-task markers take one off.
func featureScore(text string, tools bool) int {
	lower := strings.ToLower(text)
	n := len(strings.Fields(text))
	s := 1
	if n > 40 {
		s++
	}
	if n > 200 {
		s++
	}
	has := func(g string) bool {
		for _, m := range markers[g] {
			if strings.Contains(lower, m) {
				return true
			}
		}
		return false
	}
	if has("reason") || has("create") {
		s++
	}
	if has("code") || has("math") {
		s++
	}
	if tools {
		s++
	}
	if has("simple") {
		s--
	}
	return min(5, max(1, s))
}
