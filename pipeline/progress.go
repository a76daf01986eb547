package pipeline

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event is one thing that happened in a run: a stage starting, progressing,
// finishing, or a log message.
type Event struct {
	Time   time.Time      `json:"time"`
	Run    string         `json:"run"`
	Stage  string         `json:"stage,omitempty"`
	Event  string         `json:"event"` // start, progress, done, reused, failed, interrupted, not_built, log
	Done   int64          `json:"done,omitempty"`
	Total  int64          `json:"total,omitempty"`
	Unit   string         `json:"unit,omitempty"`
	Msg    string         `json:"msg,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
}

// Reporter receives a run's events. Implementations must be safe for
// concurrent use.
type Reporter interface {
	Report(Event)
}

// JSONReporter writes one JSON object per line: what CI logs and other
// programs read. Progress events are throttled to one a second per stage.
type JSONReporter struct {
	mu   sync.Mutex
	w    io.Writer
	last map[string]time.Time
}

// NewJSONReporter writes events to w.
func NewJSONReporter(w io.Writer) *JSONReporter {
	return &JSONReporter{w: w, last: map[string]time.Time{}}
}

func (r *JSONReporter) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Event == "progress" && e.Done != e.Total {
		if time.Since(r.last[e.Stage]) < time.Second {
			return
		}
		r.last[e.Stage] = time.Now()
	}
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	r.w.Write(append(data, '\n'))
}

// BarReporter draws one progress bar per stage on a terminal.
type BarReporter struct {
	mu    sync.Mutex
	w     io.Writer
	start map[string]time.Time
	last  time.Time
	open  bool // a bar line is being redrawn
}

// NewBarReporter draws on w, which should be a terminal.
func NewBarReporter(w io.Writer) *BarReporter {
	return &BarReporter{w: w, start: map[string]time.Time{}}
}

func (r *BarReporter) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Event {
	case "start":
		r.start[e.Stage] = e.Time
		r.line(fmt.Sprintf("%-9s started", e.Stage), false)
	case "progress":
		if time.Since(r.last) < 100*time.Millisecond && e.Done != e.Total {
			return
		}
		r.last = time.Now()
		r.line(bar(e, time.Since(r.start[e.Stage])), false)
	case "log":
		r.line(fmt.Sprintf("%-9s %s%s", e.Stage, e.Msg, fieldText(e.Fields)), true)
	default:
		took := ""
		if t, ok := r.start[e.Stage]; ok {
			took = " in " + e.Time.Sub(t).Round(time.Millisecond).String()
		}
		msg := e.Msg
		if msg != "" {
			msg = ": " + msg
		}
		r.line(fmt.Sprintf("%-9s %s%s%s%s", e.Stage, e.Event, took, msg, fieldText(e.Fields)), true)
	}
}

// line redraws the current line, and ends it when final.
func (r *BarReporter) line(s string, final bool) {
	fmt.Fprintf(r.w, "\r\033[K%s", s)
	r.open = !final
	if final {
		fmt.Fprintln(r.w)
	}
}

func bar(e Event, elapsed time.Duration) string {
	const width = 30
	if e.Total <= 0 {
		return fmt.Sprintf("%-9s %d %s  %s", e.Stage, e.Done, e.Unit, elapsed.Round(time.Second))
	}
	frac := float64(e.Done) / float64(e.Total)
	frac = max(0, min(1, frac))
	n := int(frac * width)
	eta := ""
	if e.Done > 0 && e.Done < e.Total {
		eta = " eta " + time.Duration(float64(elapsed)/frac*(1-frac)).Round(time.Second).String()
	}
	rate := ""
	if s := elapsed.Seconds(); s > 0 {
		rate = fmt.Sprintf(" %.0f %s/s", float64(e.Done)/s, e.Unit)
	}
	return fmt.Sprintf("%-9s [%s%s] %3.0f%% %d/%d %s%s%s%s", e.Stage, strings.Repeat("=", n), strings.Repeat(" ", width-n),
		frac*100, e.Done, e.Total, e.Unit, rate, eta, fieldText(e.Fields))
}

func fieldText(f map[string]any) string {
	if len(f) == 0 {
		return ""
	}
	return " " + FormatFields(f)
}

// FormatFields renders a summary as sorted key=value pairs, with maps and
// lists as JSON.
func FormatFields(f map[string]any) string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := f[k]
		switch v.(type) {
		case map[string]any, map[string]int64, map[string]int, []any:
			data, _ := json.Marshal(v)
			v = string(data)
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", k, v)
	}
	return b.String()
}

// multiReporter fans events out to several reporters.
type multiReporter []Reporter

func (m multiReporter) Report(e Event) {
	for _, r := range m {
		r.Report(e)
	}
}
