package eval

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distillery/distillery/routes"
)

// The browser test renders report.html in headless Chromium (Debian package
// "chromium"). It is skipped when no browser is installed, unless
// DISTILLERY_REQUIRE_CHROMIUM=1 (and with -short, unless so required).
// DISTILLERY_CHROMIUM names another binary.

func chromium(t *testing.T) string {
	t.Helper()
	required := os.Getenv("DISTILLERY_REQUIRE_CHROMIUM") == "1"
	if testing.Short() && !required {
		t.Skip("browser test skipped with -short")
	}
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	if env := os.Getenv("DISTILLERY_CHROMIUM"); env != "" {
		names = []string{env}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if required {
		t.Fatalf("no Chromium (%s) on PATH; install Debian's chromium package", strings.Join(names, ", "))
	}
	t.Skip("no Chromium on PATH (apt-get install chromium); set DISTILLERY_REQUIRE_CHROMIUM=1 to fail instead")
	return ""
}

// runChromium runs one headless Chromium command on a file and returns its
// stdout and the console messages it logged.
func runChromium(t *testing.T, bin, file string, args ...string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless=new", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-dev-shm-usage", "--hide-scrollbars"}
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+abs)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 3000))
	}
	// Chromium logs every console message (console.error, CSP violations,
	// failed loads) as "...:CONSOLE(line)] ..." or "...:CONSOLE:line] ...".
	var console []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			console = append(console, line)
		}
	}
	return stdout.String(), console
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var svgChild = regexp.MustCompile(`<(rect|polyline|circle|line|text)\b`)

func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()

	// The detector works: a page with a console error and an external
	// stylesheet (blocked by the report's policy) must show both.
	control := filepath.Join(dir, "control.html")
	os.WriteFile(control, []byte(`<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">`+
		`<link rel="stylesheet" href="https://example.invalid/x.css"></head><body><script>console.error("control")</script></body></html>`), 0o644)
	if _, console := runChromium(t, bin, control, "--dump-dom"); len(console) < 2 {
		t.Fatalf("console capture broken: the control page logged %d messages, want 2: %q", len(console), console)
	}

	r, err := Evaluate(fixture())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, ReportHTML)
	shot := filepath.Join(dir, "shot.png")
	// One launch renders the DOM and a screenshot.
	dom, console := runChromium(t, bin, page, "--dump-dom", "--screenshot="+shot, "--window-size=1100,2600")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	if !strings.Contains(dom, "Quality gate: FAIL") {
		t.Errorf("the rendered page lacks the gate banner")
	}
	for id, min := range map[string]int{"confusion-matrix": 12, "reliability-diagram": 10, "loss-curve": 2, "cost-chart": 2} {
		i := strings.Index(dom, `id="`+id+`"`)
		if i < 0 {
			t.Errorf("rendered DOM has no #%s", id)
			continue
		}
		fig := dom[i:]
		fig = fig[:strings.Index(fig, "</figure>")]
		s := strings.Index(fig, "<svg")
		e := strings.Index(fig, "</svg>")
		if s < 0 || e < s {
			t.Errorf("#%s has no SVG", id)
			continue
		}
		if n := len(svgChild.FindAllString(fig[s:e], -1)); n < min {
			t.Errorf("#%s SVG has %d shapes, want at least %d", id, n, min)
		}
	}

	// The page paints: a screenshot that is not blank and shows the plots'
	// colours (the heat-map blue, the cost chart's green).
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	var ink, blue, green int
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if r < 240 || g < 240 || bl < 240 {
				ink++
			}
			if bl > 150 && r < 90 && g < 130 {
				blue++
			}
			if g > 140 && r < 80 && bl < 120 {
				green++
			}
		}
	}
	total := (b.Dx() / 2) * (b.Dy() / 2)
	if ink < total/100 || blue < 50 || green < 50 {
		t.Errorf("screenshot %v looks unpainted: %d of %d sampled pixels inked, %d blue, %d green", b, ink, total, blue, green)
	}
}

// Text from the recipe and the data is escaped: a model name or label
// holding markup shows as text, and nothing runs.
func TestHTMLEscapes(t *testing.T) {
	labels := []string{`<img src=x onerror=console.error(1)>`, `x&y "q"`}
	in := Input{
		Model: `<script>console.error("model")</script>`, Version: "v&1", Task: routes.TaskClassification, Labels: labels,
		Gold:            []string{labels[0], labels[1]},
		Teacher:         Answers{Texts: []string{labels[0], labels[1]}},
		Student:         Answers{Texts: []string{labels[0], labels[0]}, Dists: [][]float64{{0.9, 0.1}, {0.6, 0.4}}},
		Gate:            Gate{MinParity: 0.5},
		TargetPrecision: 0.9,
	}
	r, err := Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	var html, md bytes.Buffer
	if err := r.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	r.WriteMarkdown(&md)
	for _, bad := range []string{"<script", "<img", `"q"`} {
		if strings.Contains(html.String(), bad) {
			t.Errorf("report.html holds unescaped %q", bad)
		}
	}
	if strings.Contains(md.String(), "<img") || strings.Contains(md.String(), "<script") {
		t.Errorf("report.md holds unescaped markup")
	}
	checkHTMLStatic(t, html.String(), "confusion-matrix", "reliability-diagram")
	bin := chromium(t)
	page := filepath.Join(t.TempDir(), ReportHTML)
	os.WriteFile(page, html.Bytes(), 0o644)
	dom, console := runChromium(t, bin, page, "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<img") || !strings.Contains(dom, "&lt;script&gt;") {
		t.Errorf("markup from the data reached the DOM")
	}
}
