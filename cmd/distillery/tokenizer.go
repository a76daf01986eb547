package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
)

func tokenizerCommand() *cli.Command {
	return &cli.Command{
		Name:  "tokenizer",
		Usage: "train tokenizers",
		Subcommands: []*cli.Command{
			{
				Name:      "train",
				Usage:     "train a byte-level BPE tokenizer (Qwen2/Qwen3 pre-tokenizer, ChatML special tokens)",
				ArgsUsage: "FILE...",
				Description: "Reads each FILE as documents: a .jsonl file gives the string at --field of each line's\n" +
					"object, any other file gives one document a line (blank lines are skipped). Writes\n" +
					"tokenizer.json and tokenizer_config.json into --out, readable by HuggingFace tokenizers\n" +
					"and by `distillery tokenize`. The same input and flags give byte-identical files.",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "vocab", Usage: "vocabulary size: 256 bytes + merges + special tokens (required)"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "folder to write the tokenizer into (required)"},
					&cli.IntFlag{Name: "min-frequency", Value: 2, Usage: "fewest occurrences of a pair to merge it"},
					&cli.StringFlag{Name: "field", Value: "text", Usage: "field of JSONL objects holding the text"},
					&cli.StringSliceFlag{Name: "special", Usage: "special tokens, in id order (default: <|endoftext|>, <|im_start|>, <|im_end|>)"},
					&cli.IntFlag{Name: "max-length", Value: 32768, Usage: "model_max_length written to tokenizer_config.json"},
					jsonFlag,
				},
				Action: tokenizerTrain,
			},
		},
	}
}

func tokenizerTrain(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("tokenizer train: give at least one text or JSONL file")
	}
	out := c.String("out")
	if out == "" {
		return usageError("tokenizer train: --out DIR is required")
	}
	vocab := c.Int("vocab")
	if vocab == 0 {
		return usageError("tokenizer train: --vocab N is required")
	}
	if c.Int("min-frequency") < 0 {
		return usageError("tokenizer train: --min-frequency must not be negative")
	}
	if c.Int("max-length") <= 0 {
		return usageError("tokenizer train: --max-length must be positive")
	}
	var texts []string
	var size int
	for _, path := range c.Args().Slice() {
		docs, err := tokenizerReadDocs(path, c.String("field"))
		if err != nil {
			return err
		}
		for _, d := range docs {
			size += len(d)
		}
		texts = append(texts, docs...)
	}
	opts := model.BPETrainOptions{
		VocabSize:      vocab,
		MinFrequency:   c.Int("min-frequency"),
		SpecialTokens:  c.StringSlice("special"),
		ModelMaxLength: c.Int("max-length"),
	}
	start := time.Now()
	tt, err := model.TrainBPE(texts, opts)
	if err != nil {
		return usageError("%v", err) // the only failures are bad options
	}
	elapsed := time.Since(start)
	if err := tt.Save(out); err != nil {
		return err
	}
	res := struct {
		Out       string   `json:"out"`
		Documents int      `json:"documents"`
		Bytes     int      `json:"bytes"`
		VocabSize int      `json:"vocab_size"`
		Merges    int      `json:"merges"`
		Special   []string `json:"special_tokens"`
		Seconds   float64  `json:"seconds"`
	}{out, len(texts), size, tt.VocabSize(), len(tt.Merges), tt.SpecialTokens, elapsed.Seconds()}
	if c.Bool("json") {
		return writeJSON(c, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "trained on %d documents (%.1f MB) in %v\n", res.Documents, float64(size)/1e6, elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "vocab size %d: 256 bytes, %d merges, %d special tokens\n", res.VocabSize, res.Merges, len(res.Special))
	if res.VocabSize < vocab {
		fmt.Fprintf(w, "(stopped below --vocab %d: no pair left that occurs %d times)\n", vocab, max(opts.MinFrequency, 1))
	}
	fmt.Fprintf(w, "wrote %s and %s\n", filepath.Join(out, "tokenizer.json"), filepath.Join(out, "tokenizer_config.json"))
	return nil
}

// tokenizerReadDocs reads the documents of one file: the string at field of
// each object of a .jsonl file, or each non-blank line of any other file.
func tokenizerReadDocs(path, field string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	jsonl := strings.EqualFold(filepath.Ext(path), ".jsonl")
	br := bufio.NewReaderSize(f, 1<<16)
	var docs []string
	for n := 1; ; n++ {
		line, readErr := br.ReadBytes('\n')
		if readErr != nil && readErr != io.EOF {
			return nil, fmt.Errorf("%s: line %d: %w", path, n, readErr)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(bytes.TrimSpace(line)) == 0:
		case jsonl:
			var row map[string]json.RawMessage
			if err := json.Unmarshal(line, &row); err != nil {
				return nil, usageError("%s: line %d: %v", path, n, err)
			}
			raw, ok := row[field]
			var s string
			if !ok || json.Unmarshal(raw, &s) != nil {
				return nil, usageError("%s: line %d: no string field %q", path, n, field)
			}
			docs = append(docs, s)
		default:
			docs = append(docs, string(line))
		}
		if readErr == io.EOF {
			return docs, nil
		}
	}
}
