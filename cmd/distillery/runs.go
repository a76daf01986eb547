package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/pipeline"
)

func runsCommand() *cli.Command {
	return &cli.Command{
		Name:  "runs",
		Usage: "list and inspect run folders",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list runs, newest first",
				Flags: []cli.Flag{&cli.StringFlag{Name: "recipe", Usage: "only runs of this recipe"}, jsonFlag},
				Action: func(c *cli.Context) error {
					ms, err := pipeline.ListRuns(c.String("runs-dir"), c.String("recipe"))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if ms == nil {
							ms = []*pipeline.Manifest{}
						}
						return writeJSON(c, ms)
					}
					if len(ms) == 0 {
						fmt.Fprintf(c.App.Writer, "no runs under %s\n", c.String("runs-dir"))
						return nil
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "RUN\tRECIPE\tSTATUS\tSTAGES\tCREATED")
					for _, m := range ms {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.RunID, m.RecipeName, m.Status, stageLine(m), m.Created.Local().Format(time.DateTime))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "show",
				Usage:     "show a run's manifest: stages, timings, outputs",
				ArgsUsage: "RUN",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("runs show: give one run id or folder")
					}
					dir, err := pipeline.FindRun(c.String("runs-dir"), c.Args().First())
					if err != nil {
						return err
					}
					m, err := pipeline.ReadManifest(dir)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writeJSON(c, m)
					}
					printRunSummary(c.App.Writer, &pipeline.Result{RunDir: dir, Manifest: m})
					return nil
				},
			},
		},
	}
}

// stageLine is a compact stage status, e.g. "data:done harvest:not_built".
func stageLine(m *pipeline.Manifest) string {
	var parts []string
	for _, s := range m.Stages {
		if s.Status != pipeline.StatusPending {
			parts = append(parts, s.Name+":"+s.Status)
		}
	}
	return strings.Join(parts, " ")
}

func printRunSummary(w io.Writer, res *pipeline.Result) {
	m := res.Manifest
	fmt.Fprintf(w, "run %s  recipe %s  status %s\n", m.RunID, m.RecipeName, m.Status)
	fmt.Fprintf(w, "folder %s\n", res.RunDir)
	fmt.Fprintf(w, "recipe %s (sha256 %.12s)  tool %s\n", m.RecipeFile, m.RecipeHash, m.ToolVersion)
	if m.Error != "" {
		fmt.Fprintf(w, "error: %s\n", m.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTATUS\tTIME\tOUTPUTS\tSUMMARY")
	for _, s := range m.Stages {
		status := s.Status
		if s.ReusedFrom != "" && s.ReusedFrom != m.RunID {
			status += " (from " + s.ReusedFrom + ")"
		}
		took := "-"
		if s.Seconds > 0 {
			took = (time.Duration(s.Seconds * float64(time.Second))).Round(time.Millisecond).String()
		}
		var size int64
		for _, o := range s.Outputs {
			size += o.Size
		}
		outs := "-"
		if len(s.Outputs) > 0 {
			outs = fmt.Sprintf("%d files, %s", len(s.Outputs), humanBytes(size))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, status, took, outs, pipeline.FormatFields(s.Summary))
	}
	tw.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
