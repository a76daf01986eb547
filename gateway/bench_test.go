package gateway

import (
	"testing"

	"github.com/distillery/distillery/openai"
)

func BenchmarkComplexityScore(b *testing.B) {
	c, _ := newClassifier("model")
	req := &openai.ChatCompletionRequest{Messages: []openai.ChatMessage{{Role: "user", Content: openai.TextContent(hardText)}}}
	for b.Loop() {
		c.scoreRequest(req, false)
	}
}

func BenchmarkSemanticLookup(b *testing.B) {
	for b.Loop() {
		SemanticLookupBench(2000, 200)
	}
}
