package distill

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/store"
)

// Checkpoint layout in TrainOptions.Dir: checkpoint/ holds trainable.safetensors
// (the weights being trained), optimizer.safetensors (AdamW moments as
// exp_avg.NAME and exp_avg_sq.NAME), best.safetensors (the best evaluated
// weights, with early stopping) and state.json (step, data position, RNG
// state, best-so-far). A new checkpoint is written to checkpoint.tmp/ and
// swapped in by renames, so a crash leaves the old or the new one.
const (
	CheckpointDir = "checkpoint"
	MetricsFile   = "metrics.jsonl"
)

// trainState is state.json.
type trainState struct {
	Fingerprint  string     `json:"fingerprint"`
	Step         int        `json:"step"`
	Epoch        int        `json:"epoch"`
	Pos          int        `json:"pos"` // next micro-batch of the epoch
	RNG          []uint64   `json:"rng"`
	Tokens       int64      `json:"tokens"`
	Seconds      float64    `json:"seconds"`
	FirstLoss    float64    `json:"first_loss"`
	LastLoss     float64    `json:"last_loss"`
	FirstVal     evalResult `json:"first_val"`
	LastVal      evalResult `json:"last_val"`
	HasBest      bool       `json:"has_best"`
	BestVal      float64    `json:"best_val"`
	BestAcc      float64    `json:"best_acc"`
	BestStep     int        `json:"best_step"`
	BadEvals     int        `json:"bad_evals"`
	EarlyStopped bool       `json:"early_stopped"`
}

// RemoveCheckpoint deletes a finished run's checkpoint from dir.
func RemoveCheckpoint(dir string) error {
	for _, d := range []string{CheckpointDir, CheckpointDir + ".tmp", CheckpointDir + ".old"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	return nil
}

func (t *trainer) save() error {
	if t.o.Dir == "" {
		return nil
	}
	tmp := filepath.Join(t.o.Dir, CheckpointDir+".tmp")
	dst := filepath.Join(t.o.Dir, CheckpointDir)
	old := filepath.Join(t.o.Dir, CheckpointDir+".old")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	var trw, opt []model.Tensor
	for i, n := range t.gs.names {
		sh := t.w[i].Shape().Dimensions
		trw = append(trw, model.NewTensor(n, model.F32, sh, tensors.MustCopyFlatData[float32](t.w[i])))
		opt = append(opt, model.NewTensor("exp_avg."+n, model.F32, sh, tensors.MustCopyFlatData[float32](t.m[i])),
			model.NewTensor("exp_avg_sq."+n, model.F32, sh, tensors.MustCopyFlatData[float32](t.v[i])))
	}
	files := map[string][]model.Tensor{"trainable.safetensors": trw, "optimizer.safetensors": opt}
	if t.best != nil {
		shp := t.o.Trainable.Shapes()
		var best []model.Tensor
		for _, n := range t.gs.names {
			best = append(best, model.NewTensor(n, model.F32, shp[n], t.best[n]))
		}
		files["best.safetensors"] = best
	}
	for name, ts := range files {
		if err := model.WriteSafetensors(filepath.Join(tmp, name), ts, nil); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	t.st.RNG = tensors.MustCopyFlatData[uint64](t.rng)
	data, err := json.MarshalIndent(t.st, "", "  ")
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(filepath.Join(tmp, "state.json"), data); err != nil {
		return err
	}
	if err := t.metrics.sync(); err != nil {
		return err
	}
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return os.RemoveAll(old)
}

// load restores a checkpoint from Dir; it reports false when there is
// none. A checkpoint of a different configuration is an error.
func (t *trainer) load() (bool, error) {
	if t.o.Dir == "" {
		return false, nil
	}
	dir := filepath.Join(t.o.Dir, CheckpointDir)
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		dir = filepath.Join(t.o.Dir, CheckpointDir+".old") // crashed between the two renames
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
			return false, nil
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return false, err
	}
	var st trainState
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if st.Fingerprint != t.st.Fingerprint {
		return false, fmt.Errorf("checkpoint %s was written for other training settings (fingerprint %s, now %s); remove it to start over", dir, st.Fingerprint, t.st.Fingerprint)
	}
	read := func(file string, name func(string) string, into []*tensors.Tensor) error {
		f, err := model.OpenSafetensors(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		for i, n := range t.gs.names {
			x, err := f.Tensor(name(n))
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", file, err)
			}
			v, err := x.Float32()
			if err != nil {
				return err
			}
			into[i].FinalizeAll()
			into[i] = tensors.FromFlatDataAndDimensions(v, x.Shape...)
		}
		return nil
	}
	id := func(n string) string { return n }
	if err := read("trainable.safetensors", id, t.w); err != nil {
		return false, err
	}
	if err := read("optimizer.safetensors", func(n string) string { return "exp_avg." + n }, t.m); err != nil {
		return false, err
	}
	if err := read("optimizer.safetensors", func(n string) string { return "exp_avg_sq." + n }, t.v); err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(dir, "best.safetensors")); err == nil {
		best := make([]*tensors.Tensor, len(t.gs.names))
		for i := range best {
			best[i] = tensors.FromScalar(float32(0))
		}
		if err := read("best.safetensors", id, best); err != nil {
			return false, err
		}
		t.best = map[string][]float32{}
		for i, n := range t.gs.names {
			t.best[n] = tensors.MustCopyFlatData[float32](best[i])
			best[i].FinalizeAll()
		}
	}
	t.rng.FinalizeAll()
	t.rng = tensors.FromFlatDataAndDimensions(st.RNG, len(st.RNG))
	t.st = st
	return true, nil
}

// metricsLog appends JSON lines to metrics.jsonl.
type metricsLog struct {
	f *os.File
	w *bufio.Writer
}

// openMetrics opens Dir/metrics.jsonl for appending, first dropping lines
// past step (written after the checkpoint being resumed).
func openMetrics(dir string, step int) (*metricsLog, error) {
	if dir == "" {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		return &metricsLog{f: f, w: bufio.NewWriter(&bytes.Buffer{})}, nil
	}
	path := filepath.Join(dir, MetricsFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var kept []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		var rec struct {
			Step int `json:"step"`
		}
		if len(bytes.TrimSpace(line)) == 0 || !bytes.HasSuffix(line, []byte("\n")) || json.Unmarshal(line, &rec) != nil {
			continue
		}
		if rec.Step <= step {
			kept = append(kept, line...)
		}
	}
	if step == 0 {
		kept = nil
	}
	if err := store.WriteFileAtomic(path, kept); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &metricsLog{f: f, w: bufio.NewWriter(f)}, nil
}

func (m *metricsLog) write(rec map[string]any) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = m.w.Write(append(data, '\n'))
	return err
}

func (m *metricsLog) sync() error {
	if err := m.w.Flush(); err != nil {
		return err
	}
	return m.f.Sync()
}

func (m *metricsLog) close() error {
	if m.f == nil {
		return nil
	}
	err := m.w.Flush()
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	m.f = nil
	return err
}
