package distill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/routes"
)

// PromptSpec turns an input text into the messages sent to a teacher.
type PromptSpec struct {
	Template    string // with {instruction}, {text} and {labels}
	Instruction string
	// MaxInputChars cuts the input text first (0: no limit); see routes.CutText.
	MaxInputChars int
	Labels        []string
	System        string
	FewShot       [][2]string // (input, answer) pairs, rendered through Template
}

// Render fills the template for one input.
func (p PromptSpec) Render(text string) string {
	text = routes.CutText(text, p.MaxInputChars)
	labels := strings.Join(p.Labels, ", ")
	instr := strings.ReplaceAll(p.Instruction, "{labels}", labels)
	// Fill {text} last, so braces inside the input are left alone.
	out := strings.ReplaceAll(p.Template, "{instruction}", instr)
	out = strings.ReplaceAll(out, "{labels}", labels)
	return strings.ReplaceAll(out, "{text}", text)
}

// Messages builds the chat: the system prompt, the few-shot turns, then the
// rendered input.
func (p PromptSpec) Messages(text string) []Message {
	var ms []Message
	if p.System != "" {
		ms = append(ms, Message{Role: "system", Content: p.System})
	}
	for _, fs := range p.FewShot {
		ms = append(ms, Message{Role: "user", Content: p.Render(fs[0])}, Message{Role: "assistant", Content: fs[1]})
	}
	return append(ms, Message{Role: "user", Content: p.Render(text)})
}

// requestKey identifies a request by what the teacher sees, with the input
// text normalised, so identical prompts are asked (and paid for) once.
func requestKey(model string, req Request, text string) string {
	norm := make([]Message, len(req.Messages))
	copy(norm, req.Messages)
	norm[len(norm)-1].Content = datasets.Normalize(norm[len(norm)-1].Content)
	data, _ := json.Marshal(struct {
		Model       string
		Messages    []Message
		MaxTokens   int
		Temperature float64
		TopLogprobs int
	}{model, norm, req.MaxTokens, req.Temperature, req.TopLogprobs})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// maxInputTokens bounds the input tokens of a request from above: byte-level
// BPE never yields more tokens than bytes, plus the chat format's per-message
// overhead. The budget reserves against this bound, so it holds exactly.
func maxInputTokens(req Request) int {
	n := 8
	for _, m := range req.Messages {
		n += len(m.Content) + len(m.Role) + 8
	}
	return n
}
