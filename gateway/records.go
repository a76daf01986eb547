package gateway

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/distillery/distillery/datasets"
)

// Record is one request's accounting row (records-*.parquet). No key or
// prompt text is kept: Tenant is the key's configured name.
type Record struct {
	Time             time.Time `parquet:"time,timestamp(millisecond)" json:"time"`
	RequestID        string    `parquet:"request_id" json:"request_id"`
	Tenant           string    `parquet:"tenant" json:"tenant"`
	Endpoint         string    `parquet:"endpoint" json:"endpoint"`
	Model            string    `parquet:"model" json:"model"`             // what the client asked for
	AnsweredBy       string    `parquet:"answered_by" json:"answered_by"` // the model that answered
	Tier             string    `parquet:"tier" json:"tier"`               // student, mid, premium, cache
	Complexity       int32     `parquet:"complexity" json:"complexity"`
	Confidence       float64   `parquet:"confidence" json:"confidence"` // student confidence, -1 if none
	Escalated        bool      `parquet:"escalated" json:"escalated"`
	EscalatedFrom    string    `parquet:"escalated_from" json:"escalated_from"`
	Cache            string    `parquet:"cache" json:"cache"` // hit-exact, hit-semantic, miss, skip:*, off
	Reason           string    `parquet:"reason" json:"reason"`
	Stream           bool      `parquet:"stream" json:"stream"`
	Status           int32     `parquet:"status" json:"status"`
	PromptTokens     int64     `parquet:"prompt_tokens" json:"prompt_tokens"`
	CompletionTokens int64     `parquet:"completion_tokens" json:"completion_tokens"`
	// StudentTokens are tokens the student spent on an answer that was
	// then escalated (its cost is in CostUSD).
	StudentTokens int64   `parquet:"student_tokens" json:"student_tokens"`
	CostUSD       float64 `parquet:"cost_usd" json:"cost_usd"`
	LatencyMS     float64 `parquet:"latency_ms" json:"latency_ms"`
}

// rotatingWriter appends rows to Parquet files in dir, each written to a
// temp file and renamed into place when closed (every rowsPerFile rows,
// every flushEvery, and on Close), so readers only see whole files.
type rotatingWriter[T any] struct {
	dir, prefix string
	rowsPerFile int
	open        func(path string) (rowSink[T], error)
	log         *slog.Logger

	mu      sync.Mutex
	cur     rowSink[T]
	rows    int
	seq     int
	flusher *flusher
}

// rowSink is one open file.
type rowSink[T any] interface {
	Write(rows ...T) error
	Close() error
}

func newRotatingWriter[T any](dir, prefix string, rowsPerFile int, flushEvery time.Duration, log *slog.Logger,
	open func(path string) (rowSink[T], error)) (*rotatingWriter[T], error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &rotatingWriter[T]{dir: dir, prefix: prefix, rowsPerFile: rowsPerFile, open: open, log: log}
	w.flusher = startFlusher(flushEvery, w.Flush)
	return w, nil
}

func (w *rotatingWriter[T]) Write(row T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil {
		w.seq++
		name := fmt.Sprintf("%s-%s-%04d.parquet", w.prefix, time.Now().UTC().Format("20060102T150405.000"), w.seq)
		s, err := w.open(filepath.Join(w.dir, name))
		if err != nil {
			w.log.Error("cannot open "+w.prefix+" file", "err", err)
			return
		}
		w.cur = s
	}
	if err := w.cur.Write(row); err != nil {
		w.log.Error("cannot write a "+w.prefix+" row", "err", err)
		return
	}
	w.rows++
	if w.rows >= w.rowsPerFile {
		w.closeLocked()
	}
}

func (w *rotatingWriter[T]) closeLocked() {
	if w.cur == nil {
		return
	}
	if err := w.cur.Close(); err != nil {
		w.log.Error("cannot close a "+w.prefix+" file", "err", err)
	}
	w.cur, w.rows = nil, 0
}

// Flush closes the current file, making its rows visible.
func (w *rotatingWriter[T]) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeLocked()
}

// Close flushes and stops the timer.
func (w *rotatingWriter[T]) Close() {
	if w == nil {
		return
	}
	w.flusher.stop()
	w.Flush()
}

// flusher calls flush every interval until stopped.
type flusher struct {
	once       sync.Once
	quit, done chan struct{}
}

func startFlusher(every time.Duration, flush func()) *flusher {
	f := &flusher{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-f.quit:
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return f
}

// stop ends the loop and waits for it; it may be called more than once.
func (f *flusher) stop() {
	f.once.Do(func() { close(f.quit) })
	<-f.done
}

// parquetFile writes rows of T to a temp file, renamed to path on Close.
type parquetFile[T any] struct {
	path string
	f    *os.File
	pw   *parquet.GenericWriter[T]
}

func openParquet[T any](path string) (rowSink[T], error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &parquetFile[T]{path: path, f: f, pw: parquet.NewGenericWriter[T](f, parquet.KeyValueMetadata("distillery.schema", "gateway-record/v1"))}, nil
}

func (p *parquetFile[T]) Write(rows ...T) error {
	_, err := p.pw.Write(rows)
	return err
}

func (p *parquetFile[T]) Close() error {
	err := p.pw.Close()
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.f.Name(), p.path)
	}
	if err != nil {
		os.Remove(p.f.Name())
	}
	return err
}

// ReadRecords reads every records-*.parquet file in dir.
func ReadRecords(dir string) ([]Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "records-*.parquet"))
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, f := range files {
		rows, err := parquet.ReadFile[Record](f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

// softLabelSink adapts datasets.SoftLabelWriter (the harvest schema).
type softLabelSink struct{ w *datasets.SoftLabelWriter }

func openSoftLabels(path string) (rowSink[datasets.SoftLabel], error) {
	w, err := datasets.NewSoftLabelWriter(path, 0)
	if err != nil {
		return nil, err
	}
	return softLabelSink{w}, nil
}

func (s softLabelSink) Write(rows ...datasets.SoftLabel) error { return s.w.Write(rows...) }
func (s softLabelSink) Close() error                           { return s.w.Close() }

// Redactor rewrites captured text before it is written.
type Redactor func(string) string

var redactors = map[string]Redactor{
	"email":  regexRedactor(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`, "[EMAIL]"),
	"phone":  regexRedactor(`\+?\d[\d\s().-]{7,}\d`, "[PHONE]"),
	"card":   regexRedactor(`\b(?:\d[ -]?){13,19}\b`, "[CARD]"),
	"digits": regexRedactor(`\d`, "0"),
}

func regexRedactor(pattern, repl string) Redactor {
	re := regexp.MustCompile(pattern)
	return func(s string) string { return re.ReplaceAllString(s, repl) }
}

// chainRedactors applies the named redactions, then extra (a hook set in
// code), in order.
func chainRedactors(names []string, extra Redactor) Redactor {
	var rs []Redactor
	for _, n := range names {
		rs = append(rs, redactors[n])
	}
	if extra != nil {
		rs = append(rs, extra)
	}
	return func(s string) string {
		for _, r := range rs {
			s = r(s)
		}
		return s
	}
}
