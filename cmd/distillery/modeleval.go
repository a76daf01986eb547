package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/pipeline"
	"github.com/distillery/distillery/recipes"
)

// modelEvalCommand is `distillery model eval`: a checkpoint's accuracy on
// a split of a classification recipe's data, prompted as training does.
func modelEvalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "score a checkpoint on a split of a classification recipe's data (accuracy vs the majority class)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "recipe", Usage: "classification recipe giving the data, prompt and labels (required)"},
			&cli.StringFlag{Name: "model", Usage: "checkpoint folder with its tokenizer (required)"},
			&cli.StringFlag{Name: "split", Value: "test", Usage: "train, val or test"},
			&cli.StringSliceFlag{Name: "set", Usage: "override a recipe value, key.path=value"},
			backendFlag, jsonFlag,
		},
		Action: modelEval,
	}
}

func modelEval(c *cli.Context) error {
	if c.String("recipe") == "" || c.String("model") == "" {
		return usageError("model eval: --recipe and --model are required")
	}
	r, err := recipes.Load(c.String("recipe"), recipes.Options{Set: c.StringSlice("set")})
	if err != nil {
		return err
	}
	b, err := model.NewBackend(c.String("backend"))
	if err != nil {
		return usageError("%v", err)
	}
	m, err := model.Load(c.String("model"), model.LoadOptions{Backend: b})
	if err != nil {
		return usageError("%v", err)
	}
	tok, err := model.LoadTokenizer(c.String("model"))
	if err != nil {
		return usageError("%v", err)
	}
	s, err := pipeline.ScoreClassifier(c.Context, r, m, tok, c.String("split"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c, s)
	}
	fmt.Fprintf(c.App.Writer, "%s split: %d examples, accuracy %.4f, majority class %q %.4f (%+.1f points)\n",
		s.Split, s.Examples, s.Accuracy, s.Majority, s.MajorityRate, s.PointsOverMaj)
	fmt.Fprintf(c.App.Writer, "gold %v, predicted %v, truncated prompts %d\n", s.ByLabel, s.Predicted, s.Truncated)
	return nil
}
