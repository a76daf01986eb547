package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/pipeline"
)

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "import, inspect and describe datasets",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import JSONL, CSV or Parquet prompts into a canonical Parquet file with train/val/test splits",
				ArgsUsage: "SOURCE[:SPLIT]...",
				Description: "Each SOURCE is a file; append :train, :val or :test to put all its rows in one split.\n" +
					"Other rows are split by a hash of their id, so adding rows never moves existing ones.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "canonical Parquet file to write (required)"},
					&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto, jsonl, csv or parquet"},
					&cli.StringFlag{Name: "text-field", Value: "text", Usage: "field holding the text"},
					&cli.StringFlag{Name: "label-field", Usage: "field holding a label"},
					&cli.StringFlag{Name: "id-field", Usage: "field holding a stable id (default: hash of the normalised text)"},
					&cli.StringFlag{Name: "split", Value: "0.8,0.1,0.1", Usage: "train,val,test fractions"},
					&cli.StringFlag{Name: "seed", Value: "distillery", Usage: "salt of the split hash"},
					&cli.BoolFlag{Name: "no-dedupe", Usage: "keep rows whose normalised text repeats"},
					&cli.BoolFlag{Name: "skip-invalid", Usage: "skip and count bad rows instead of failing"},
					jsonFlag,
				},
				Action: dataImport,
			},
			{
				Name:      "inspect",
				Usage:     "show the rows of a Parquet or JSONL file",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "table", Usage: "jsonl or table"},
					&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 10, Usage: "rows to show (0: all)"},
				},
				Action: dataInspect,
			},
			{
				Name:      "stats",
				Usage:     "count rows, splits and labels, and describe text lengths",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{jsonFlag},
				Action:    dataStats,
			},
		},
	}
}

func dataImport(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("data import: give at least one source file")
	}
	if c.String("out") == "" {
		return usageError("data import: --out FILE is required")
	}
	fr, err := parseFractions(c.String("split"))
	if err != nil {
		return err
	}
	opts := datasets.ImportOptions{
		TextField: c.String("text-field"), LabelField: c.String("label-field"), IDField: c.String("id-field"),
		Fractions: fr, Seed: c.String("seed"), Dedupe: !c.Bool("no-dedupe"), SkipInvalid: c.Bool("skip-invalid"),
		Out: c.String("out"),
	}
	for _, a := range c.Args().Slice() {
		src := datasets.Source{Path: a, Format: c.String("format")}
		if i := strings.LastIndexByte(a, ':'); i > 0 && datasets.ValidSplit(a[i+1:]) {
			src.Path, src.Split = a[:i], a[i+1:]
		}
		opts.Sources = append(opts.Sources, src)
	}
	rep, err := reporter("auto", c.Bool("json"))
	if err != nil {
		return err
	}
	if rep != nil {
		rep.Report(pipeline.Event{Time: time.Now(), Stage: "import", Event: "start"})
		opts.Progress = func(rows int64) {
			rep.Report(pipeline.Event{Time: time.Now(), Stage: "import", Event: "progress", Done: rows, Unit: "rows"})
		}
	}
	res, err := datasets.Import(c.Context, opts)
	if err != nil {
		return err
	}
	if rep != nil {
		rep.Report(pipeline.Event{Time: time.Now(), Stage: "import", Event: "done", Fields: map[string]any{"rows": res.Rows}})
	}
	if c.Bool("json") {
		return writeJSON(c, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s: %d rows (sha256 %.12s)\n", res.Out, res.Rows, res.SHA256)
	fmt.Fprintf(w, "splits: %s\n", countsText(res.BySplit))
	if len(res.ByLabel) > 0 {
		fmt.Fprintf(w, "labels: %s\n", countsText(res.ByLabel))
	}
	if res.Duplicates > 0 || res.Invalid > 0 {
		fmt.Fprintf(w, "dropped: %d duplicates, %d invalid rows\n", res.Duplicates, res.Invalid)
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", warn)
	}
	return nil
}

func parseFractions(s string) (datasets.Fractions, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return datasets.Fractions{}, usageError("--split %q: want three fractions train,val,test", s)
	}
	var v [3]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f < 0 || f > 1 {
			return datasets.Fractions{}, usageError("--split %q: %q is not a fraction in [0,1]", s, p)
		}
		v[i] = f
	}
	return datasets.Fractions{Train: v[0], Val: v[1], Test: v[2]}, nil
}

func countsText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func dataInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("data inspect: give one file")
	}
	cols, rows, err := datasets.Inspect(c.Args().First(), c.Int("limit"))
	if err != nil {
		return err
	}
	switch c.String("format") {
	case "jsonl":
		enc := json.NewEncoder(c.App.Writer)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	case "table":
		return writeTable(c.App.Writer, cols, rows)
	}
	return usageError("--format %q: want jsonl or table", c.String("format"))
}

// writeTable prints rows as aligned columns, cutting long cells.
func writeTable(w io.Writer, cols []string, rows []map[string]any) error {
	const maxCell = 60
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, col := range cols {
			cells[i] = cellText(r[col], maxCell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func cellText(v any, maxLen int) string {
	var s string
	switch x := v.(type) {
	case nil:
		s = ""
	case string:
		s = x
	default:
		b, _ := json.Marshal(x)
		s = string(b)
	}
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > maxLen {
		s = string([]rune(s)[:maxLen-1]) + "…"
	}
	return s
}

func dataStats(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("data stats: give one file")
	}
	st, err := datasets.ComputeStats(c.Args().First())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c, st)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "rows: %d\n", st.Rows)
	fmt.Fprintf(w, "columns: %s\n", strings.Join(st.Columns, ", "))
	if len(st.BySplit) > 0 {
		fmt.Fprintf(w, "splits: %s\n", countsText(st.BySplit))
	}
	if len(st.ByLabel) > 0 {
		fmt.Fprintf(w, "labels: %s\n", countsText(st.ByLabel))
	}
	t := st.TextChars
	fmt.Fprintf(w, "text chars: min %.0f  median %.0f  mean %.1f  p95 %.0f  max %.0f\n", t.Min, t.Median, t.Mean, t.P95, t.Max)
	return nil
}
