package model

import (
	"encoding/json"
	"testing"
)

// Tiny hand-made tokenizer.json files, so that the pipeline pieces are
// tested without the real vocabularies.

// tokTinyByteLevel returns a byte-level BPE tokenizer.json object: the 256
// byte characters (ids 0-255), then the merged tokens in merges order, then
// the added tokens from id 1000. Tests adjust the returned map.
func tokTinyByteLevel(merges [][2]string, added ...map[string]any) map[string]any {
	vocab := map[string]any{}
	for b := 0; b < 256; b++ {
		vocab[string(bpeByteToRune[b])] = b
	}
	var ms []any
	for i, m := range merges {
		vocab[m[0]+m[1]] = 256 + i
		ms = append(ms, []any{m[0], m[1]})
	}
	var at []any
	for i, a := range added {
		a["id"] = 1000 + i
		for k, v := range map[string]any{"single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true} {
			if _, ok := a[k]; !ok {
				a[k] = v
			}
		}
		at = append(at, a)
	}
	return map[string]any{
		"version":      "1.0",
		"added_tokens": at,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pretokPatternQwen2}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		"model": map[string]any{
			"type": "BPE", "vocab": vocab, "merges": ms, "unk_token": nil,
			"byte_fallback": false, "ignore_merges": false, "continuing_subword_prefix": "", "end_of_word_suffix": "",
		},
	}
}

// tokTinyParse builds a Tokenizer from a tokenizer.json object and an
// optional tokenizer_config.json object.
func tokTinyParse(t testing.TB, tj map[string]any, config map[string]any) *Tokenizer {
	t.Helper()
	tk, err := tokTinyTry(tj, config)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func tokTinyTry(tj map[string]any, config map[string]any) (*Tokenizer, error) {
	tb, err := json.Marshal(tj)
	if err != nil {
		return nil, err
	}
	var cb []byte
	if config != nil {
		if cb, err = json.Marshal(config); err != nil {
			return nil, err
		}
	}
	return ParseTokenizer(tb, cb)
}

// tokTinyModel returns the "model" object of a tokenizer.json map.
func tokTinyModel(tj map[string]any) map[string]any { return tj["model"].(map[string]any) }

// tokTinyTokens encodes text and returns the token strings.
func tokTinyTokens(tk *Tokenizer, text string) []string {
	var out []string
	for _, id := range tk.Encode(text) {
		out = append(out, tk.tokens[id])
	}
	return out
}
