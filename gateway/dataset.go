package gateway

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DatasetRow is one line of a model's capture.dataset (JSONL): a training
// example whose label is the answer of the tier that served the request.
// A recipe lists the file as a data source (text_field: text, label_field:
// label, id_field: id) with teacher.kind: labels, so that
// `distillery run --incremental` retrains on the premium tier's answers
// without asking any teacher again.
type DatasetRow struct {
	ID string `json:"id"` // the request id (X-Request-Id)
	// Text is the input: for a routed model the last user message (the
	// {text} of routes.json's prompt), else the non-system messages joined
	// by newlines. Redacted like the Parquet capture.
	Text string `json:"text"`
	// Label is the answer as the recipe's label: for a label-mode route the
	// label it names (answers naming none are not written), else the answer
	// with surrounding white space trimmed.
	Label  string    `json:"label"`
	Answer string    `json:"answer"` // the answer as sent (redacted)
	Tier   string    `json:"tier"`
	Model  string    `json:"model"` // the upstream model that answered
	Time   time.Time `json:"time"`
}

// datasetWriter appends DatasetRows to one JSONL file. Rows are buffered
// and appended as whole lines with one write (then fsync) every
// flushEvery, when the buffer passes 1 MiB, on Flush and on Close.
type datasetWriter struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	buf     []byte
	flusher *flusher
}

const datasetBufMax = 1 << 20

func newDatasetWriter(path string, flushEvery time.Duration, log *slog.Logger) (*datasetWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	// Create the file now, so a recipe can list it before any traffic.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	f.Close()
	w := &datasetWriter{path: path, log: log}
	w.flusher = startFlusher(flushEvery, w.Flush)
	return w, nil
}

func (w *datasetWriter) Write(row DatasetRow) {
	line, err := json.Marshal(row)
	if err != nil {
		w.log.Error("cannot encode a dataset row", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(append(w.buf, line...), '\n')
	if len(w.buf) >= datasetBufMax {
		w.flushLocked()
	}
}

func (w *datasetWriter) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.Write(w.buf)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		// Keep the rows for the next flush rather than lose them.
		w.log.Error("cannot append to the capture dataset", "path", w.path, "err", err)
		if len(w.buf) < 64*datasetBufMax {
			return
		}
	}
	w.buf = w.buf[:0]
}

// Flush appends the buffered rows to the file.
func (w *datasetWriter) Flush() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

// Close stops the timer and flushes.
func (w *datasetWriter) Close() {
	if w == nil {
		return
	}
	w.flusher.stop()
	w.Flush()
}
