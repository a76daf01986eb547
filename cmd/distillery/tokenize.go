package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
)

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "tokenize",
		Usage: "encode JSON strings to token ids, or decode id arrays back to text",
		Description: "Reads standard input, one JSON value a line, and prints one JSON line for each:\n" +
			"a string gives the array of its ids (as HuggingFace's encode(text, add_special_tokens=False):\n" +
			"no BOS is added, special-token text such as <|im_end|> becomes its id); with --decode, an\n" +
			"array of ids gives its text as a string. Blank lines are skipped.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tokenizer", Aliases: []string{"t"}, Usage: "tokenizer.json, or a folder holding it and tokenizer_config.json (required)"},
			&cli.BoolFlag{Name: "decode", Usage: "read JSON arrays of ids and print JSON strings"},
			&cli.BoolFlag{Name: "skip-special", Usage: "with --decode, leave special tokens out of the text"},
		},
		Action: tokenizeAction,
	}
}

func tokenizeAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("tokenize: unexpected argument %q (input is read from standard input)", c.Args().First())
	}
	path := c.String("tokenizer")
	if path == "" {
		return usageError("tokenize: --tokenizer FILE_OR_DIR is required")
	}
	if c.Bool("skip-special") && !c.Bool("decode") {
		return usageError("tokenize: --skip-special only applies with --decode")
	}
	tk, err := model.LoadTokenizer(path)
	if err != nil {
		return err
	}
	in := c.App.Reader
	if in == nil {
		return usageError("tokenize: no standard input")
	}
	return tokenizeStream(tk, in, c.App.Writer, c.Bool("decode"), c.Bool("skip-special"))
}

// tokenizeStream converts each input line and writes the result line. A
// line that is not the expected JSON is a usage error naming its number.
func tokenizeStream(tk *model.Tokenizer, r io.Reader, w io.Writer, decode, skipSpecial bool) error {
	br := bufio.NewReaderSize(r, 1<<16)
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false) // keep "<|im_end|>" readable
	for n := 1; ; n++ {
		line, readErr := br.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			_ = bw.Flush() // keep the answers to the lines before
			return fmt.Errorf("tokenize: reading line %d: %w", n, readErr)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out, err := tokenizeLine(tk, line, decode, skipSpecial)
			if err != nil {
				_ = bw.Flush()
				return usageError("tokenize: line %d: %v", n, err)
			}
			if err := enc.Encode(out); err != nil {
				return err
			}
		}
		if readErr != nil { // io.EOF
			return bw.Flush()
		}
		// Answer each line before waiting for the next (for interactive use).
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

func tokenizeLine(tk *model.Tokenizer, line []byte, decode, skipSpecial bool) (any, error) {
	if !decode {
		var text string
		if err := json.Unmarshal(line, &text); err != nil {
			return nil, fmt.Errorf("want a JSON string: %w", err)
		}
		return tk.Encode(text), nil
	}
	var ids []int
	if err := json.Unmarshal(line, &ids); err != nil {
		return nil, fmt.Errorf("want a JSON array of token ids: %w", err)
	}
	for _, id := range ids {
		if id < 0 || id >= tk.VocabSize() {
			return nil, fmt.Errorf("id %d is outside the vocabulary (0 to %d)", id, tk.VocabSize()-1)
		}
	}
	if skipSpecial {
		return tk.DecodeSkipSpecial(ids), nil
	}
	return tk.Decode(ids), nil
}
