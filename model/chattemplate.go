package model

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Message is one turn of a chat. Role is "system", "user" or "assistant".
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatFamily names a chat format. Rather than running the Jinja template of
// tokenizer_config.json, we recognise which family it belongs to and render
// that family's format in Go.
type chatFamily string

const (
	chatLlama3  chatFamily = "llama3"  // Llama 3.x
	chatChatML  chatFamily = "chatml"  // Qwen2/2.5/3, SmolLM2
	chatMistral chatFamily = "mistral" // Mistral / Llama-2 [INST]
	chatPlain   chatFamily = "plain"   // "role: content" lines
)

// ChatTemplate returns the chat format family: "llama3", "chatml",
// "mistral" or "plain".
func (t *Tokenizer) ChatTemplate() string { return string(t.chat) }

// ApplyChat renders messages in the tokenizer's chat format. The result
// includes the BOS text where the family starts with one (Llama-3,
// Mistral), so encode it with Encode and add nothing. addGenerationPrompt
// appends the start of an assistant turn.
func (t *Tokenizer) ApplyChat(msgs []Message, addGenerationPrompt bool) (string, error) {
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return "", fmt.Errorf("chat: message %d has role %q (want system, user or assistant)", i, m.Role)
		}
	}
	var b strings.Builder
	switch t.chat {
	case chatLlama3:
		t.chatLlama3(&b, msgs, addGenerationPrompt)
	case chatChatML:
		t.chatChatML(&b, msgs, addGenerationPrompt)
	case chatMistral:
		if err := t.chatMistral(&b, msgs); err != nil {
			return "", err
		}
	default:
		for _, m := range msgs {
			b.WriteString(m.Role + ": " + m.Content + "\n")
		}
		if addGenerationPrompt {
			b.WriteString("assistant:")
		}
	}
	return b.String(), nil
}

// chatLlama3 renders <|begin_of_text|> then, per message,
// <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|> (content
// trimmed, as Meta's template does).
func (t *Tokenizer) chatLlama3(b *strings.Builder, msgs []Message, gen bool) {
	b.WriteString(chatOr(t.bosText, "<|begin_of_text|>"))
	for _, m := range msgs {
		b.WriteString("<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n" + strings.TrimSpace(m.Content) + "<|eot_id|>")
	}
	if gen {
		b.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
	}
}

// chatChatML renders <|im_start|>role\ncontent<|im_end|>\n per message,
// with the template's default system prompt (Qwen2.5, SmolLM2) when the
// conversation has none.
func (t *Tokenizer) chatChatML(b *strings.Builder, msgs []Message, gen bool) {
	if t.sysText != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		b.WriteString("<|im_start|>system\n" + t.sysText + "<|im_end|>\n")
	}
	for _, m := range msgs {
		b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
	}
	if gen {
		b.WriteString("<|im_start|>assistant\n")
	}
}

// chatMistral renders <s>[INST] system\n\nuser [/INST]assistant</s>[INST] ...
// Turns must alternate user/assistant after an optional leading system
// message. The prompt already ends where the assistant starts, so there is
// no separate generation prompt.
func (t *Tokenizer) chatMistral(b *strings.Builder, msgs []Message) error {
	b.WriteString(chatOr(t.bosText, "<s>"))
	eos := "</s>"
	if _, ok := t.ID(eos); !ok && t.eosText != "" {
		eos = t.eosText
	}
	system := ""
	if len(msgs) > 0 && msgs[0].Role == "system" {
		system, msgs = msgs[0].Content, msgs[1:]
	}
	for i, m := range msgs {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if m.Role != want {
			return fmt.Errorf("chat: mistral format needs an optional system message then alternating user/assistant turns; message %d is %q", i, m.Role)
		}
		if m.Role == "assistant" {
			b.WriteString(m.Content + eos)
			continue
		}
		content := m.Content
		if i == 0 && system != "" {
			content = system + "\n\n" + content
		}
		b.WriteString("[INST] " + content + " [/INST]")
	}
	return nil
}

func chatOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// chatTemplateString reads chat_template: a string, or a list of named
// templates (the "default" one is used, else the first).
func chatTemplateString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", fmt.Errorf("tokenizer_config.json chat_template: %w", err)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	if len(named) > 0 {
		return named[0].Template, nil
	}
	return "", nil
}

// chatDetect picks the family from the template text, or else from the
// special tokens the vocabulary has.
func chatDetect(template string, added map[string]int) chatFamily {
	switch {
	case strings.Contains(template, "<|start_header_id|>"):
		return chatLlama3
	case strings.Contains(template, "<|im_start|>"):
		return chatChatML
	case strings.Contains(template, "[INST]"):
		return chatMistral
	}
	has := func(s string) bool { _, ok := added[s]; return ok }
	switch {
	case has("<|start_header_id|>") && has("<|eot_id|>"):
		return chatLlama3
	case has("<|im_start|>") && has("<|im_end|>"):
		return chatChatML
	case has("[INST]"):
		return chatMistral
	}
	return chatPlain
}

// chatDefaultSystemRe finds a ChatML system turn written out in full as one
// template literal (the default system prompt of Qwen2/2.5 and SmolLM2);
// Qwen3's template concatenates the user's system message instead.
var chatDefaultSystemRe = regexp.MustCompile(`<\|im_start\|>system(?:\n|\\n)([^'"{}]+?)<\|im_end\|>`)

// chatDefaultSystem returns the default system prompt of a ChatML template.
func chatDefaultSystem(template string) string {
	m := chatDefaultSystemRe.FindStringSubmatch(template)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(m[1], `\n`, "\n")
}
