package model

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var chatUpdateGolden = flag.Bool("update-chat-golden", false, "rewrite testdata/tokenizer/chat-*.golden")

// chatCases are the conversations every family renders for its golden file.
var chatCases = []struct {
	name string
	msgs []Message
	gen  bool
}{
	{"user-gen", []Message{{"user", "Hello!"}}, true},
	{"system-user-gen", []Message{{"system", "You are terse."}, {"user", "What is 2+2?"}}, true},
	{"multi-turn-gen", []Message{{"system", "Be kind."}, {"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}}, true},
	{"training", []Message{{"user", "Rate this review: great tea"}, {"assistant", "positive"}}, false},
	{"whitespace", []Message{{"user", "  padded\n\n"}}, true},
	{"empty-gen", nil, true},
}

// Template excerpts: enough for family detection and the default system
// prompt, quoted from the models' tokenizer_config.json files.
const (
	chatQwen3Template   = `{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %}`
	chatQwen25Template  = `{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}`
	chatSmolLM2Template = `{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}`
	chatLlama3Template  = `{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}`
	chatMistralTemplate = `{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}`
)

// chatTokenizer builds a tiny tokenizer with the family's special tokens and
// a tokenizer_config.json holding template (none when "").
func chatTokenizer(t *testing.T, tokens []string, config map[string]any) *Tokenizer {
	t.Helper()
	var added []map[string]any
	for _, s := range tokens {
		added = append(added, map[string]any{"content": s})
	}
	return tokTinyParse(t, tokTinyByteLevel(nil, added...), config)
}

func chatFamilies(t *testing.T) map[string]*Tokenizer {
	llama := []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
	chatml := []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
	mistral := []string{"<unk>", "<s>", "</s>"}
	return map[string]*Tokenizer{
		"llama3":         chatTokenizer(t, llama, map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": chatLlama3Template}),
		"chatml":         chatTokenizer(t, chatml, map[string]any{"bos_token": nil, "eos_token": "<|im_end|>", "chat_template": chatQwen3Template}),
		"chatml-qwen2.5": chatTokenizer(t, chatml, map[string]any{"eos_token": "<|im_end|>", "chat_template": chatQwen25Template}),
		"chatml-smollm2": chatTokenizer(t, chatml, map[string]any{"eos_token": "<|im_end|>", "chat_template": []any{map[string]any{"name": "default", "template": chatSmolLM2Template}}}),
		"mistral":        chatTokenizer(t, mistral, map[string]any{"bos_token": "<s>", "eos_token": "</s>", "chat_template": chatMistralTemplate}),
		"plain":          chatTokenizer(t, nil, nil),
	}
}

func TestChatTemplateGolden(t *testing.T) {
	for name, tk := range chatFamilies(t) {
		t.Run(name, func(t *testing.T) {
			family := strings.SplitN(name, "-", 2)[0]
			if tk.ChatTemplate() != family {
				t.Fatalf("ChatTemplate() = %q, want %q", tk.ChatTemplate(), family)
			}
			var b strings.Builder
			for _, c := range chatCases {
				out, err := tk.ApplyChat(c.msgs, c.gen)
				if err != nil {
					out = "error: " + err.Error()
				}
				fmt.Fprintf(&b, "=== %s (generation prompt: %v) ===\n%s\n=== end ===\n", c.name, c.gen, out)
			}
			path := filepath.Join("testdata", "tokenizer", "chat-"+name+".golden")
			if *chatUpdateGolden {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-chat-golden to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("%s differs from the golden file:\n%s", path, got)
			}
		})
	}
}

func TestChatTemplateErrors(t *testing.T) {
	for name, tk := range chatFamilies(t) {
		if _, err := tk.ApplyChat([]Message{{"tool", "x"}}, true); err == nil || !strings.Contains(err.Error(), `"tool"`) {
			t.Errorf("%s: unknown role: %v", name, err)
		}
	}
	m := chatFamilies(t)["mistral"]
	if _, err := m.ApplyChat([]Message{{"assistant", "hi"}}, true); err == nil {
		t.Error("mistral: assistant first should fail")
	}
	if _, err := m.ApplyChat([]Message{{"user", "a"}, {"system", "b"}}, true); err == nil {
		t.Error("mistral: late system message should fail")
	}
}

func TestChatDefaultSystem(t *testing.T) {
	for tmpl, want := range map[string]string{
		chatQwen3Template:   "",
		chatQwen25Template:  "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
		chatSmolLM2Template: "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
		chatLlama3Template:  "",
	} {
		if got := chatDefaultSystem(tmpl); got != want {
			t.Errorf("default system of %.40q... = %q, want %q", tmpl, got, want)
		}
	}
}

// TestChatTemplateEncodes checks that a rendered Llama-3 prompt encodes
// with its special tokens as single ids, BOS first.
func TestChatTemplateEncodes(t *testing.T) {
	tk := tokTestTokenizer(t, "llama3")
	s, err := tk.ApplyChat([]Message{{"user", "Hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := tk.Encode(s)
	bos, _ := tk.BOS()
	eot, _ := tk.ID("<|eot_id|>")
	if len(ids) == 0 || ids[0] != bos || !strings.Contains(fmt.Sprint(ids), fmt.Sprint(eot)) || tk.Decode(ids) != s {
		t.Errorf("%q encodes to %v", s, ids)
	}
}
