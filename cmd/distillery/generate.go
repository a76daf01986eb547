package main

import (
	"fmt"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "generate text (or token ids) with a checkpoint, streaming tokens as they are decided",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "checkpoint folder (required)"},
			&cli.StringFlag{Name: "prompt", Usage: "prompt text (needs tokenizer.json in the model folder, or --tokenizer)"},
			&cli.StringFlag{Name: "ids", Usage: "prompt as comma-separated token ids, instead of --prompt"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer.json or its folder (default: the model folder)"},
			&cli.BoolFlag{Name: "chat", Usage: "wrap the prompt as a user turn in the model's chat template"},
			&cli.StringFlag{Name: "system", Usage: "with --chat: a system message"},
			&cli.IntFlag{Name: "max-tokens", Value: 64, Usage: "tokens to generate at most"},
			&cli.Float64Flag{Name: "temperature", Value: 0, Usage: "0: greedy"},
			&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass"},
			&cli.Uint64Flag{Name: "seed", Usage: "sampling seed"},
			&cli.IntFlag{Name: "top-logprobs", Usage: "alternatives reported per token with --json (0-20)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "compute dtype: f32 or bf16"},
			backendFlag, jsonFlag,
		},
		Action: generateAction,
	}
}

func generateAction(c *cli.Context) error {
	if (c.String("prompt") == "") == (c.String("ids") == "") {
		return usageError("generate: give exactly one of --prompt and --ids")
	}
	if n := c.Int("top-logprobs"); n < 0 || n > 20 {
		return usageError("--top-logprobs %d: want 0-20", n)
	}
	m, err := loadModel(c)
	if err != nil {
		return err
	}
	var tok *model.Tokenizer
	if c.String("prompt") != "" || c.String("tokenizer") != "" {
		path := c.String("tokenizer")
		if path == "" {
			path = c.String("model")
		}
		if tok, err = model.LoadTokenizer(path); err != nil {
			return usageError("%v", err)
		}
	}
	var prompt []int
	if c.String("ids") != "" {
		if prompt, err = parseIDs(c.String("ids")); err != nil {
			return err
		}
	} else {
		text := c.String("prompt")
		if c.Bool("chat") {
			var msgs []model.Message
			if s := c.String("system"); s != "" {
				msgs = append(msgs, model.Message{Role: "system", Content: s})
			}
			if text, err = tok.ApplyChat(append(msgs, model.Message{Role: "user", Content: text}), true); err != nil {
				return err
			}
		}
		prompt = tok.Encode(text)
	}
	opts := model.GenerateOptions{
		MaxNewTokens: c.Int("max-tokens"), Temperature: c.Float64("temperature"), TopP: c.Float64("top-p"),
		Seed: c.Uint64("seed"), TopLogprobs: c.Int("top-logprobs"),
	}
	if tok != nil {
		opts.StopIDs = tok.EOS()
	}
	// Stream text to stdout as it becomes valid UTF-8 (a token may end
	// inside a multi-byte character).
	var ids []int
	printed := 0
	stream := func(_ int, st model.Step) (bool, error) {
		if c.Bool("json") {
			return false, nil
		}
		if tok == nil {
			fmt.Fprintf(c.App.Writer, "%d ", st.ID)
			return false, nil
		}
		ids = append(ids, st.ID)
		text := tok.DecodeSkipSpecial(ids)
		if utf8.ValidString(text) && len(text) > printed {
			fmt.Fprint(c.App.Writer, text[printed:])
			printed = len(text)
		}
		return false, nil
	}
	seqs, err := m.Generate(c.Context, [][]int{prompt}, opts, stream)
	if err != nil {
		return err
	}
	s := seqs[0]
	if c.Bool("json") {
		out := map[string]any{"prompt_ids": prompt, "ids": s.IDs(), "steps": s.Steps, "finish_reason": s.FinishReason}
		if tok != nil {
			out["text"] = tok.DecodeSkipSpecial(s.IDs())
		}
		return writeJSON(c, out)
	}
	fmt.Fprintln(c.App.Writer)
	fmt.Fprintf(c.App.ErrWriter, "[%d prompt tokens, %d generated, finish_reason %s]\n", len(prompt), len(s.Steps), s.FinishReason)
	return nil
}
