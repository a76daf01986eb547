package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/distillery/distillery/pipeline"
	"github.com/distillery/distillery/recipes"
)

var setFlag = &cli.StringSliceFlag{Name: "set", Usage: "override a recipe key, e.g. --set train.lr=1e-4 (repeatable; the value is YAML)"}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check recipes without running anything",
		ArgsUsage: "RECIPE...",
		Flags:     []cli.Flag{setFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageError("validate: give at least one recipe file")
			}
			type result struct {
				File   string           `json:"file"`
				OK     bool             `json:"ok"`
				Hash   string           `json:"hash,omitempty"`
				Errors []*recipes.Error `json:"errors,omitempty"`
				Error  string           `json:"error,omitempty"`
			}
			var results []result
			bad := 0
			for _, f := range c.Args().Slice() {
				r, err := recipes.Load(f, recipes.Options{Set: c.StringSlice("set")})
				res := result{File: f, OK: err == nil}
				var errs recipes.Errors
				switch {
				case err == nil:
					res.Hash = r.Hash()
				case errors.As(err, &errs):
					res.Errors = errs
				default:
					res.Error = err.Error()
				}
				if err != nil {
					bad++
				}
				results = append(results, res)
				if c.Bool("json") {
					continue
				}
				if err != nil {
					fmt.Fprintln(c.App.ErrWriter, err)
				} else {
					fmt.Fprintf(c.App.Writer, "%s: ok\n", f)
				}
			}
			if c.Bool("json") {
				if err := writeJSON(c, results); err != nil {
					return err
				}
			}
			if bad > 0 {
				if !c.Bool("json") {
					fmt.Fprintf(c.App.ErrWriter, "%d of %d recipes invalid\n", bad, len(results))
				}
				return cli.Exit("", exitInvalid)
			}
			return nil
		},
	}
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a recipe's stages (data, harvest, train, quantize, eval, publish)",
		ArgsUsage: "RECIPE",
		Description: "A run lives in RUNS_DIR/<recipe>/<run-id>/ with a manifest.json. Stages whose inputs match a finished\n" +
			"stage of an earlier run are reused. A run stopped at any point continues with --resume RUN.",
		Flags: []cli.Flag{
			setFlag,
			&cli.StringFlag{Name: "resume", Usage: "continue an earlier run (its id or folder); RECIPE defaults to the run's recipe"},
			&cli.BoolFlag{Name: "force", Usage: "rerun the selected stages even when a cached result exists"},
			&cli.StringFlag{Name: "from", Usage: "start at this stage (earlier ones must have results)"},
			&cli.StringFlag{Name: "until", Usage: "stop after this stage"},
			&cli.StringFlag{Name: "only", Usage: "run just this stage"},
			&cli.StringFlag{Name: "progress", Value: "auto", Usage: "auto (a bar on a terminal, JSON lines otherwise), bar, json or none"},
			&cli.BoolFlag{Name: "json", Usage: "print the final manifest as JSON on stdout; progress as JSON lines on stderr"},
			&cli.BoolFlag{Name: "dry-run", Usage: "import the data and estimate the harvest's cost, without calling the teacher"},
			&cli.BoolFlag{Name: "incremental", Usage: "ask the teacher only about examples that are new since the last published release (the rest come from its soft labels)"},
		},
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	runsDir := c.String("runs-dir")
	recipePath := c.Args().First()
	sets := c.StringSlice("set")
	if c.NArg() > 1 {
		return usageError("run: give one recipe file (got %d arguments)", c.NArg())
	}
	incremental := c.Bool("incremental")
	if resume := c.String("resume"); resume != "" {
		dir, err := pipeline.FindRun(runsDir, resume)
		if err != nil {
			return err
		}
		m, err := pipeline.ReadManifest(dir)
		if err != nil {
			return err
		}
		if recipePath == "" {
			recipePath = m.RecipeFile
		}
		if len(sets) == 0 {
			sets = m.Overrides
		}
		incremental = incremental || m.Incremental
	}
	if recipePath == "" {
		return usageError("run: give a recipe file, or --resume RUN")
	}
	r, err := recipes.Load(recipePath, recipes.Options{Set: sets})
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(recipePath); err == nil {
		r.File = abs
	}
	rep, err := reporter(c.String("progress"), c.Bool("json"))
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return dryRun(c, r, rep, sets)
	}
	res, err := pipeline.Run(c.Context, r, pipeline.Options{
		RunsDir: runsDir, Resume: c.String("resume"), Force: c.Bool("force"),
		From: c.String("from"), Until: c.String("until"), Only: c.String("only"),
		Overrides: sets, Reporter: rep, ToolVersion: version(), Incremental: incremental,
	})
	if res != nil {
		if c.Bool("json") {
			if jerr := writeJSON(c, res.Manifest); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			printRunSummary(c.App.Writer, res)
			printScoreboard(c.App.Writer, res.RunDir)
			if note := pipeline.IncrementalNote(res.Manifest); note != "" && c.Bool("incremental") {
				fmt.Fprintln(c.App.Writer, note)
			}
		}
		if err != nil && res.Manifest.Status == pipeline.StatusInterrupted {
			fmt.Fprintf(c.App.ErrWriter, "interrupted: continue with  distillery run --resume %s\n", res.Manifest.RunID)
		}
	}
	return err
}

// reporter picks how progress is shown: a bar on a terminal, JSON lines
// otherwise (CI logs, pipes).
func reporter(mode string, jsonOut bool) (pipeline.Reporter, error) {
	if mode == "auto" {
		mode = "json"
		if !jsonOut && term.IsTerminal(int(os.Stderr.Fd())) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return pipeline.NewBarReporter(os.Stderr), nil
	case "json":
		return pipeline.NewJSONReporter(os.Stderr), nil
	case "none":
		return nil, nil
	}
	return nil, usageError("--progress %q: want auto, bar, json or none", mode)
}

// dryRun runs the data stage and prints what the harvest would cost.
func dryRun(c *cli.Context, r *recipes.Recipe, rep pipeline.Reporter, sets []string) error {
	res, err := pipeline.Run(c.Context, r, pipeline.Options{RunsDir: c.String("runs-dir"), Until: "data", Overrides: sets, Reporter: rep, ToolVersion: version()})
	if err != nil {
		return err
	}
	est, err := pipeline.EstimateHarvest(r, res.RunDir)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c, est)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "harvest estimate for %s (teacher %s, no call made):\n", r.Name, r.Teacher.Model)
	fmt.Fprintf(w, "  examples %d, distinct prompts %d\n", est.Examples, est.UniquePrompts)
	fmt.Fprintf(w, "  input tokens %d (counted with %s), output tokens at most %d\n", est.InputTokens, est.Tokenizer, est.MaxOutput)
	fmt.Fprintf(w, "  expected cost $%.4f, worst case $%.4f", est.ExpectedUSD, est.WorstCaseUSD)
	if est.BudgetUSD > 0 {
		fmt.Fprintf(w, ", budget $%.2f", est.BudgetUSD)
		if est.WorstCaseUSD > est.BudgetUSD {
			fmt.Fprint(w, " (the harvest may stop at the budget)")
		}
	}
	fmt.Fprintln(w)
	return nil
}
