package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tokFileJSON is the part of tokenizer.json we read.
type tokFileJSON struct {
	AddedTokens  []tokAdded      `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        struct {
		Type                    string          `json:"type"`
		Vocab                   json.RawMessage `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
		UnkToken                *string         `json:"unk_token"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		FuseUnk                 bool            `json:"fuse_unk"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	} `json:"model"`
}

// tokConfigJSON is the part of tokenizer_config.json we read.
type tokConfigJSON struct {
	BOSToken     json.RawMessage `json:"bos_token"`
	EOSToken     json.RawMessage `json:"eos_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// LoadTokenizer reads a tokenizer.json file, or a folder holding
// tokenizer.json; a tokenizer_config.json beside it is read too when present.
func LoadTokenizer(path string) (*Tokenizer, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, "tokenizer.json")
	}
	tj, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	cj, err := os.ReadFile(filepath.Join(filepath.Dir(file), "tokenizer_config.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	t, err := ParseTokenizer(tj, cj)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ParseTokenizer builds a tokenizer from the bytes of tokenizer.json and,
// optionally (nil), tokenizer_config.json.
func ParseTokenizer(tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	var f tokFileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	var cfg *tokConfigJSON
	if len(bytes.TrimSpace(configJSON)) > 0 {
		cfg = &tokConfigJSON{}
		if err := json.Unmarshal(configJSON, cfg); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	t := &Tokenizer{}
	if err := t.build(&f); err != nil {
		return nil, err
	}
	if err := t.configure(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// build sets up the pipeline and the id tables from tokenizer.json.
func (t *Tokenizer) build(f *tokFileJSON) error {
	m := &f.Model
	if m.Type != "BPE" && !(m.Type == "" && len(m.Merges) > 0) {
		return fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if (m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "") || (m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "") {
		return fmt.Errorf("BPE continuing_subword_prefix/end_of_word_suffix are not supported")
	}
	vocab, err := tokParseVocab(m.Vocab)
	if err != nil {
		return err
	}
	if vocab == nil {
		return fmt.Errorf("model has no vocab")
	}
	merges, err := tokParseMerges(m.Merges)
	if err != nil {
		return err
	}
	var byteLevel bool
	if t.pretok, byteLevel, err = pretokBuild(f.PreTokenizer); err != nil {
		return err
	}
	if t.normalize, err = tokBuildNormalizer(f.Normalizer); err != nil {
		return err
	}
	if t.decoder, err = tokBuildDecoder(f.Decoder); err != nil {
		return err
	}
	if t.model, err = bpeNewModel(vocab, merges, byteLevel); err != nil {
		return err
	}
	t.model.ignoreMerges, t.model.byteFallback, t.model.fuseUnk = m.IgnoreMerges, m.ByteFallback, m.FuseUnk
	if m.UnkToken != nil {
		if id, ok := vocab[*m.UnkToken]; ok {
			t.model.unk = id
		}
	}
	return t.buildTables(f, vocab)
}

// buildTables indexes the added tokens and precomputes each id's text.
func (t *Tokenizer) buildTables(f *tokFileJSON, vocab map[string]int) error {
	size := 0
	for _, id := range vocab {
		if id < 0 {
			return fmt.Errorf("vocab has negative id %d", id)
		}
		size = max(size, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.Content == "" {
			return fmt.Errorf("added token %q has id %d", a.Content, a.ID)
		}
		size = max(size, a.ID+1)
	}
	if size > 1<<24 {
		return fmt.Errorf("vocab of %d ids is too large", size)
	}
	t.tokens = make([]string, size)
	t.special = make([]bool, size)
	for s, id := range vocab {
		t.tokens[id] = s
	}
	t.added = f.AddedTokens
	t.byText = make(map[string]int, len(t.added))
	t.rawTrie = tokNewTrie()
	for i, a := range t.added {
		t.tokens[a.ID] = a.Content
		t.special[a.ID] = a.Special
		t.byText[a.Content] = a.ID
		if !a.normalized() || t.normalize == nil {
			t.rawTrie.add(a.Content, i)
			continue
		}
		if t.normTrie == nil {
			t.normTrie = tokNewTrie()
		}
		t.normTrie.add(t.normalize(a.Content), i)
	}
	t.offs = make([]int32, size+1)
	for id, s := range t.tokens {
		t.bytes = append(t.bytes, t.decoder.tokenBytes(s)...)
		t.offs[id+1] = int32(len(t.bytes))
	}
	return nil
}

// tokTokenString reads a special-token field of tokenizer_config.json: a
// string, an AddedToken object with "content", or null. present is false
// when the field is absent.
func tokTokenString(raw json.RawMessage) (s string, present bool) {
	if len(raw) == 0 {
		return "", false
	}
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var obj struct {
		Content string `json:"content"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.Content, true
}

// tokFamilyEOS lists the end-of-turn and end-of-text tokens of the known
// families; those present as added tokens are added to EOS.
var tokFamilyEOS = []string{"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end_of_text|>", "</s>", "<|endoftext|>"}

// configure reads BOS, EOS and the chat template from tokenizer_config.json
// (cfg may be nil).
func (t *Tokenizer) configure(cfg *tokConfigJSON) error {
	if cfg == nil {
		cfg = &tokConfigJSON{}
	}
	t.bos = -1
	if s, ok := tokTokenString(cfg.BOSToken); ok {
		if id, found := t.ID(s); found && s != "" {
			t.bos, t.bosText = id, s
		}
	} else {
		for _, s := range []string{"<|begin_of_text|>", "<s>"} {
			if id, found := t.byText[s]; found {
				t.bos, t.bosText = id, s
				break
			}
		}
	}
	seen := map[int]bool{}
	addEOS := func(s string, id int) {
		if !seen[id] {
			seen[id] = true
			t.eos = append(t.eos, id)
			if t.eosText == "" {
				t.eosText = s
			}
		}
	}
	if s, ok := tokTokenString(cfg.EOSToken); ok && s != "" {
		if id, found := t.ID(s); found {
			addEOS(s, id)
		}
	}
	// Only added tokens: Qwen's vocabulary also has "</s>" as plain text.
	for _, s := range tokFamilyEOS {
		if id, found := t.byText[s]; found {
			addEOS(s, id)
		}
	}
	template, err := chatTemplateString(cfg.ChatTemplate)
	if err != nil {
		return err
	}
	t.chat = chatDetect(template, t.byText)
	t.sysText = chatDefaultSystem(template)
	return nil
}
