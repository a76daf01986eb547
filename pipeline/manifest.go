package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distillery/distillery/store"
)

// Stage and run statuses.
const (
	StatusPending     = "pending"
	StatusRunning     = "running"
	StatusDone        = "done"
	StatusReused      = "reused"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
	StatusNotBuilt    = "not_built"
	StatusSkipped     = "skipped"
	StatusIncomplete  = "incomplete"
)

// ManifestName is the run folder's record of what happened.
const ManifestName = "manifest.json"

// Manifest records a run: the recipe (secrets removed), inputs, and each
// stage's key, outputs with sha256, timings and status. It is rewritten
// atomically after every state change, so it is never half-written.
type Manifest struct {
	RunID      string          `json:"run_id"`
	RecipeName string          `json:"recipe_name"`
	RecipeFile string          `json:"recipe_file"`
	RecipeHash string          `json:"recipe_hash"`
	Recipe     json.RawMessage `json:"recipe"`
	Overrides  []string        `json:"overrides,omitempty"`
	// Incremental records run --incremental, so --resume keeps it.
	Incremental bool              `json:"incremental,omitempty"`
	ToolVersion string            `json:"tool_version"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
	Status      string            `json:"status"`
	Error       string            `json:"error,omitempty"`
	Inputs      map[string]string `json:"inputs,omitempty"`
	Stages      []*StageRecord    `json:"stages"`
}

// StageRecord is one stage's entry in the manifest.
type StageRecord struct {
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	Key        string            `json:"key,omitempty"`
	ReusedFrom string            `json:"reused_from,omitempty"`
	Inputs     map[string]string `json:"inputs,omitempty"`
	Outputs    []store.Object    `json:"outputs,omitempty"`
	Summary    map[string]any    `json:"summary,omitempty"`
	Started    *time.Time        `json:"started,omitempty"`
	Finished   *time.Time        `json:"finished,omitempty"`
	Seconds    float64           `json:"seconds,omitempty"`
	Attempts   int               `json:"attempts,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// Stage returns the record of a stage, or nil.
func (m *Manifest) Stage(name string) *StageRecord {
	for _, s := range m.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Complete reports whether the stage's outputs are complete.
func (s *StageRecord) Complete() bool {
	return s != nil && (s.Status == StatusDone || s.Status == StatusReused)
}

// ReadManifest loads a run folder's manifest.
func ReadManifest(runDir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(runDir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", runDir, err)
	}
	return &m, nil
}

func writeManifest(runDir string, m *Manifest) error {
	m.Updated = time.Now().UTC()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return store.WriteFileAtomic(filepath.Join(runDir, ManifestName), append(data, '\n'))
}

// hashOutputs lists the files a stage left in dir, with sizes and sha256.
// Names starting with "." are temporary and not outputs.
func hashOutputs(dir string) ([]store.Object, error) {
	var out []store.Object
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		sum, size, err := hashFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		out = append(out, store.Object{Key: filepath.ToSlash(rel), Size: size, SHA256: sum, ModTime: info.ModTime().UTC()})
		return nil
	})
	if os.IsNotExist(err) {
		return nil, nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// verifyOutputs checks that every recorded output is on disk, whole and
// unchanged.
func verifyOutputs(dir string, outs []store.Object) error {
	for _, o := range outs {
		p := filepath.Join(dir, filepath.FromSlash(o.Key))
		sum, size, err := hashFile(p)
		if err != nil {
			return err
		}
		if size != o.Size || sum != o.SHA256 {
			return fmt.Errorf("%s changed since it was recorded (sha256 %s, want %s)", p, sum[:12], o.SHA256[:12])
		}
	}
	return nil
}
