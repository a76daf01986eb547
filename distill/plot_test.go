package distill

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func readPlot(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
		t.Fatalf("plot is %dx%d, want %dx%d", b.Dx(), b.Dy(), plotW, plotH)
	}
	return img
}

func sameColor(a color.Color, b color.RGBA) bool {
	r, g, bb, _ := a.RGBA()
	return uint8(r>>8) == b.R && uint8(g>>8) == b.G && uint8(bb>>8) == b.B
}

// colorPixels counts the pixels of colour c inside the plot area.
func colorPixels(img image.Image, c color.RGBA) int {
	n := 0
	for y := plotTop; y <= plotBottom; y++ {
		for x := plotLeft; x <= plotRight; x++ {
			if sameColor(img.At(x, y), c) {
				n++
			}
		}
	}
	return n
}

func lossCurve(n int, from, scale float64) Series {
	s := Series{Name: "train loss"}
	for i := range n {
		s.X = append(s.X, float64(i*10))
		s.Y = append(s.Y, from*math.Exp(-float64(i)/scale)+0.4)
	}
	return s
}

func TestPlotWritesSeries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "loss.png")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil { // overwritten atomically
		t.Fatal(err)
	}
	val := Series{Name: "val loss", X: []float64{0, 250, 500, 750, 990}, Y: []float64{3, 1.5, math.NaN(), 0.9, 0.85}}
	series := []Series{lossCurve(100, 3, 25), val, {Name: "empty"}, {Name: "nan", X: []float64{1, 2}, Y: []float64{math.NaN(), math.Inf(1)}}}
	if err := WriteLossPlot(path, series, "quickstart: loss"); err != nil {
		t.Fatal(err)
	}
	img := readPlot(t, path)
	for i, want := range []bool{true, true, false, false} {
		if got := colorPixels(img, plotPalette[i]) > 0; got != want {
			t.Errorf("series %d (%s): pixels of its colour in the plot area: %v, want %v", i, series[i].Name, got, want)
		}
	}
	// Each series, empty or not, has a legend swatch in the right margin.
	for i := range series {
		if !sameColor(img.At(plotRight+20, plotTop+4+i*(7*glyphScale+10)+7), plotPalette[i]) {
			t.Errorf("no legend swatch for series %d", i)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("folder holds %d files, want only loss.png (temporary file left?)", len(entries))
	}
}

// TestPlotDescendingGoesDown: the pixels of a decreasing curve lie lower
// (larger image y) from left to right.
func TestPlotDescendingGoesDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loss.png")
	if err := WriteLossPlot(path, []Series{lossCurve(200, 5, 60)}, "descending"); err != nil {
		t.Fatal(err)
	}
	img := readPlot(t, path)
	prev, columns := -1.0, 0
	for x := plotLeft + 2; x < plotRight-1; x++ {
		var sum, n float64
		for y := plotTop + 1; y < plotBottom; y++ {
			if sameColor(img.At(x, y), plotPalette[0]) {
				sum, n = sum+float64(y), n+1
			}
		}
		if n == 0 {
			continue
		}
		columns++
		mean := sum / n
		if mean < prev-1 {
			t.Fatalf("column %d: curve at y=%.1f, above the previous column's %.1f", x, mean, prev)
		}
		prev = mean
	}
	if columns < (plotRight-plotLeft)/2 {
		t.Errorf("curve covers %d columns of %d", columns, plotRight-plotLeft)
	}
}

func TestPlotEdgeCases(t *testing.T) {
	dir := t.TempDir()
	for name, series := range map[string][]Series{
		"none":     nil,
		"constant": {{Name: "flat", X: []float64{0, 1, 2}, Y: []float64{2, 2, 2}}},
		"single":   {{Name: "one point with a very long name indeed", X: []float64{5}, Y: []float64{0.1}}},
		"tiny":     {{Name: "tiny", X: []float64{0, 1}, Y: []float64{1e-9, 3e-9}}},
	} {
		path := filepath.Join(dir, name+".png")
		if err := WriteLossPlot(path, series, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		readPlot(t, path)
	}
	if err := WriteLossPlot(filepath.Join(dir, "missing", "loss.png"), nil, "x"); err == nil {
		t.Error("no error writing into a missing folder")
	}
}

func TestPlotNiceTicks(t *testing.T) {
	ticks, from, to := niceTicks(0.43, 3.2, 6)
	if from > 0.43 || to < 3.2 || len(ticks) < 4 || len(ticks) > 10 {
		t.Errorf("niceTicks(0.43, 3.2) = %v [%g, %g]", ticks, from, to)
	}
	for _, v := range ticks {
		if l := tickLabel(v); len(l) > 6 {
			t.Errorf("tick label %q too long", l)
		}
	}
}

func TestPlotTickLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 2.5: "2.5", 1000: "1000", 2.5e-9: "2.5e-9", 1e12: "1e12", -0.125: "-0.125"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%g) = %q, want %q", v, got, want)
		}
	}
}
