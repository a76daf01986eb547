package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/distillery/distillery/eval"
	"github.com/distillery/distillery/pipeline"
)

// printScoreboard prints the student against the teacher from a run's
// eval report: accuracy (or the gate metric), agreement, size, latency and
// cost per million requests. It prints nothing when the run has no report.
func printScoreboard(w io.Writer, runDir string) {
	data, err := os.ReadFile(filepath.Join(runDir, "eval", "report.json"))
	if err != nil {
		return
	}
	rep, err := eval.ReadReport(data)
	if err != nil {
		return
	}
	metric := rep.Gate.Metric
	q, ok := rep.Quality[metric]
	if !ok {
		return
	}
	agree := rep.Quality["teacher_agreement"]
	cols := []string{"teacher", "student (fp)"}
	if q.Int4 != nil {
		cols = append(cols, "student (INT4)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w)
	row := func(name string, vals ...string) {
		fmt.Fprint(tw, name+"\t")
		for _, v := range vals[:len(cols)] {
			fmt.Fprint(tw, v+"\t")
		}
		fmt.Fprintln(tw)
	}
	row("", cols...)
	row(metric, f3(q.Teacher), f3(q.Student), f3p(q.Int4))
	row("teacher agreement", "-", f3(agree.Student), f3p(agree.Int4))
	row("weights on disk", "-", humanBytes(dirBytes(filepath.Join(runDir, "train", pipeline.ModelDir))),
		humanBytes(dirBytes(filepath.Join(runDir, "quantize", pipeline.ModelDir))))
	lat := func(s *eval.LatencyStats) string {
		if s == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f ms", s.P50MS)
	}
	row("latency p50", lat(rep.Latency.Teacher), lat(rep.Latency.Student), lat(rep.Latency.Int4))
	usd := func(x *float64) string {
		if x == nil {
			return "-"
		}
		return fmt.Sprintf("$%.2f", *x)
	}
	student := usd(rep.Cost.StudentUSDPer1MRequests)
	fpCost, i4Cost := student, "-"
	if rep.Cost.Served == "int4" {
		fpCost, i4Cost = "-", student
	}
	row("cost / 1M requests", usd(rep.Cost.TeacherUSDPer1MRequests), fpCost, i4Cost)
	tw.Flush()
	gate := "passed"
	if rep.GateError() != nil {
		gate = "FAILED: " + rep.GateError().Error()
	}
	fmt.Fprintf(w, "gate %s; report %s\n", gate, filepath.Join(runDir, "eval", "report.html"))
}

func f3(x float64) string { return fmt.Sprintf("%.3f", x) }

func f3p(x *float64) string {
	if x == nil {
		return "-"
	}
	return f3(*x)
}

// dirBytes is the size of the files under dir (0 when it does not exist).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
