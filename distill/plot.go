package distill

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Series is one curve of a loss plot, Y against X (e.g. the training loss
// per step, the validation loss per evaluation). Points where X or Y is NaN
// or infinite are skipped and break the line; extra X or Y values beyond
// the shorter slice are ignored.
type Series struct {
	Name string
	X, Y []float64
}

// Loss plot geometry, in pixels: the image, and the plot area inside it
// (the legend sits in the right margin, the title above).
const (
	plotW, plotH                             = 900, 500
	plotLeft, plotRight, plotTop, plotBottom = 100, 720, 50, 450
	glyphScale                               = 2 // the 5x7 font drawn at 10x14
)

// plotPalette gives the series their colours, in order (Tableau 10).
var plotPalette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// WriteLossPlot draws the series as lines on linear axes (y autoscaled to
// the finite points, with tick labels and a grid), with a legend and a
// title, and writes the PNG to path atomically (a temporary file in the
// same folder, renamed over path). Series may be empty or all NaN.
func WriteLossPlot(path string, series []Series, title string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("loss plot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("loss plot %s: %w", path, err)
		}
	}()
	if err = png.Encode(f, renderLossPlot(series, title)); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func finitePoint(x, y float64) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0) && !math.IsNaN(y) && !math.IsInf(y, 0)
}

func renderLossPlot(series []Series, title string) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	x0, x1, y0, y1 := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for i := range min(len(s.X), len(s.Y)) {
			if x, y := s.X[i], s.Y[i]; finitePoint(x, y) {
				x0, x1, y0, y1 = math.Min(x0, x), math.Max(x1, x), math.Min(y0, y), math.Max(y1, y)
			}
		}
	}
	if x0 > x1 { // no finite point
		x0, x1, y0, y1 = 0, 1, 0, 1
	}
	if x0 == x1 {
		x0, x1 = x0-1, x1+1
	}
	if y0 == y1 {
		d := math.Max(math.Abs(y0)*0.1, 0.1)
		y0, y1 = y0-d, y1+d
	}
	xTicks, x0, x1 := niceTicks(x0, x1, 8)
	yTicks, y0, y1 := niceTicks(y0, y1, 6)
	px := func(x float64) int { return plotLeft + int(math.Round((x-x0)/(x1-x0)*(plotRight-plotLeft))) }
	py := func(y float64) int { return plotBottom - int(math.Round((y-y0)/(y1-y0)*(plotBottom-plotTop))) }

	grid, axis := color.RGBA{225, 225, 225, 255}, color.RGBA{0, 0, 0, 255}
	for _, t := range xTicks {
		x := px(t)
		fillRect(img, x, plotTop, x, plotBottom, grid)
		label := tickLabel(t)
		drawText(img, x-textWidth(label)/2, plotBottom+10, label, axis)
	}
	for _, t := range yTicks {
		y := py(t)
		fillRect(img, plotLeft, y, plotRight, y, grid)
		label := tickLabel(t)
		drawText(img, plotLeft-8-textWidth(label), y-7*glyphScale/2, label, axis)
	}
	fillRect(img, plotLeft, plotTop, plotRight, plotTop, axis)
	fillRect(img, plotLeft, plotBottom, plotRight, plotBottom, axis)
	fillRect(img, plotLeft, plotTop, plotLeft, plotBottom, axis)
	fillRect(img, plotRight, plotTop, plotRight, plotBottom, axis)
	drawText(img, (plotW-textWidth(title))/2, (plotTop-7*glyphScale)/2, title, axis)

	for i, s := range series {
		c := plotPalette[i%len(plotPalette)]
		n := min(len(s.X), len(s.Y))
		havePrev, prevX, prevY := false, 0, 0
		for j := range n {
			if !finitePoint(s.X[j], s.Y[j]) {
				havePrev = false
				continue
			}
			x, y := px(s.X[j]), py(s.Y[j])
			if havePrev {
				drawLine(img, prevX, prevY, x, y, c)
			}
			if n <= 60 { // sparse series (evaluations): mark the points
				fillRect(img, x-2, y-2, x+2, y+2, c)
			}
			havePrev, prevX, prevY = true, x, y
		}
		// Legend entry in the right margin: a swatch and the name.
		ly := plotTop + 4 + i*(7*glyphScale+10)
		fillRect(img, plotRight+12, ly+6, plotRight+32, ly+8, c)
		name := []rune(s.Name)
		if maxRunes := (plotW - plotRight - 42) / (6 * glyphScale); len(name) > maxRunes {
			name = append(name[:maxRunes-2], '.', '.')
		}
		drawText(img, plotRight+40, ly, string(name), axis)
	}
	return img
}

// niceTicks returns ticks at a 1, 2 or 5 × 10^n step, about n of them,
// covering [lo, hi], and the range they span.
func niceTicks(lo, hi float64, n int) (ticks []float64, from, to float64) {
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, f := range []float64{1, 2, 5} {
		if raw <= f*mag {
			step = f * mag
			break
		}
	}
	from, to = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	for i := 0; from+float64(i)*step <= to+step/2; i++ {
		t := math.Round((from+float64(i)*step)/step) * step
		if math.Abs(t) < step*1e-9 {
			t = 0
		}
		ticks = append(ticks, t)
	}
	return ticks, from, to
}

// tickLabel formats a tick value in at most 4 significant digits, with a
// short exponent: 2.5e-9, not 2.5e-09.
func tickLabel(v float64) string {
	s := strconv.FormatFloat(v, 'g', 4, 64)
	return strings.NewReplacer("e-0", "e-", "e+0", "e", "e+", "e").Replace(s)
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			img.SetRGBA(x, y, c) // out-of-bounds points are ignored
		}
	}
}

// drawLine draws a 2-pixel-thick segment.
func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + int(math.Round(float64((x1-x0)*i)/float64(steps)))
		y := y0 + int(math.Round(float64((y1-y0)*i)/float64(steps)))
		fillRect(img, x, y, x+1, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func textWidth(s string) int { return len([]rune(s)) * 6 * glyphScale }

// drawText writes s with its top-left corner at (x, y) in the 5x7 font
// below, upper-cased; characters it lacks are drawn as '?'.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range s {
		r = unicode.ToUpper(r)
		bits, ok := font5x7[r]
		if !ok && r != ' ' {
			bits = font5x7['?']
		}
		for p := range 35 {
			if bits>>(34-p)&1 == 1 {
				gx, gy := x+p%5*glyphScale, y+p/5*glyphScale
				fillRect(img, gx, gy, gx+glyphScale-1, gy+glyphScale-1, c)
			}
		}
		x += 6 * glyphScale
	}
}

// font5x7 holds 5x7 glyphs, 35 bits each: row by row from the top, the
// leftmost pixel of a row first (most significant).
var font5x7 = map[rune]uint64{
	'0': 0x3a33ae62e, '1': 0x11842108e, '2': 0x3a211111f, '3': 0x7c441062e, '4': 0x08ca97c42, '5': 0x7e1e0862e,
	'6': 0x1910f462e, '7': 0x7c2222108, '8': 0x3a317462e, '9': 0x3a317844c, 'A': 0x3a318fe31, 'B': 0x7a31f463e,
	'C': 0x3a308422e, 'D': 0x72518c65c, 'E': 0x7e10f421f, 'F': 0x7e10f4210, 'G': 0x3a30bc62f, 'H': 0x4631fc631,
	'I': 0x38842108e, 'J': 0x1c4210a4c, 'K': 0x4654c5251, 'L': 0x42108421f, 'M': 0x4775ac631, 'N': 0x4639ace31,
	'O': 0x3a318c62e, 'P': 0x7a31f4210, 'Q': 0x3a318d64d, 'R': 0x7a31f5251, 'S': 0x3e107043e, 'T': 0x7c8421084,
	'U': 0x46318c62e, 'V': 0x46318c544, 'W': 0x4631ad6aa, 'X': 0x462a22a31, 'Y': 0x463151084, 'Z': 0x7c222221f,
	'.': 0x00000018c, '-': 0x0000f8000, '+': 0x0084f9080, '_': 0x00000001f, ':': 0x018c03180, '/': 0x002222200,
	'(': 0x088842082, ')': 0x208210888, '=': 0x001f07c00, '%': 0x632222263, ',': 0x000003088, '?': 0x3a2111004,
}
