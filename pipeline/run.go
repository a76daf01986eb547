package pipeline

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/distillery/distillery/recipes"
)

// Options controls one invocation of Run.
type Options struct {
	// RunsDir holds run folders as RunsDir/<recipe>/<run-id>; default "runs".
	RunsDir string
	// Resume continues an earlier run (its id or folder) instead of starting one.
	Resume string
	// Force reruns the selected stages even when a cached result exists.
	Force bool
	// From, Until and Only select stages; earlier stages must have results.
	From, Until, Only string
	// Overrides are the --set flags the recipe was loaded with.
	Overrides []string
	// Reporter receives events; nil discards them.
	Reporter Reporter
	// Stages maps stage names to implementations; nil means Stages().
	// A name of Order without an implementation is "not built yet".
	Stages map[string]Stage
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Incremental makes the harvest ask the teacher only about examples
	// that are new since the last published release; the answers for the
	// others are carried over from that release (see incremental.go).
	Incremental bool
}

// Result is what a finished (or stopped) run left behind.
type Result struct {
	RunDir   string
	Manifest *Manifest
}

// Run executes the recipe's stages in a run folder. Finished stages of a
// resumed run and stages whose key matches a finished stage of an earlier
// run are reused, not rerun. The manifest is rewritten atomically after every
// change, so a run killed at any point can be resumed.
func Run(ctx context.Context, r *recipes.Recipe, opts Options) (*Result, error) {
	if opts.RunsDir == "" {
		opts.RunsDir = "runs"
	}
	if opts.Stages == nil {
		opts.Stages = Stages()
	}
	rep := opts.Reporter
	if rep == nil {
		rep = multiReporter{}
	}
	from, until, err := stageRange(opts)
	if err != nil {
		return nil, err
	}

	runDir, m, err := openRun(r, opts)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(runDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if opts.Resume != "" {
		// Re-read under the lock: the run may have moved on since.
		if m, err = ReadManifest(runDir); err != nil {
			return nil, err
		}
	}
	events, err := os.OpenFile(filepath.Join(runDir, "events.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", m.RunID, err)
	}
	defer events.Close()
	e := &engine{r: r, opts: opts, runDir: runDir, m: m, rep: multiReporter{rep, NewJSONReporter(events)}}
	m.Status, m.Error = StatusRunning, ""
	if err := writeManifest(runDir, m); err != nil {
		return nil, err
	}
	err = e.run(ctx, from, until)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		m.Status, m.Error = StatusInterrupted, err.Error()
	default:
		m.Status, m.Error = StatusFailed, err.Error()
	}
	if werr := writeManifest(runDir, m); werr != nil && err == nil {
		err = werr
	}
	return &Result{RunDir: runDir, Manifest: m}, err
}

func stageRange(opts Options) (from, until int, err error) {
	idx := func(flag, name string) (int, error) {
		i := slices.Index(Order, name)
		if i < 0 {
			return 0, Invalid(fmt.Errorf("%s %q: unknown stage (stages: %v)", flag, name, Order))
		}
		return i, nil
	}
	from, until = 0, len(Order)-1
	if opts.Only != "" {
		if opts.From != "" || opts.Until != "" {
			return 0, 0, Invalid(errors.New("--only cannot be combined with --from or --until"))
		}
		i, err := idx("--only", opts.Only)
		return i, i, err
	}
	if opts.From != "" {
		if from, err = idx("--from", opts.From); err != nil {
			return 0, 0, err
		}
	}
	if opts.Until != "" {
		if until, err = idx("--until", opts.Until); err != nil {
			return 0, 0, err
		}
	}
	if from > until {
		return 0, 0, Invalid(fmt.Errorf("--from %s comes after --until %s", Order[from], Order[until]))
	}
	return from, until, nil
}

// openRun creates a new run folder, or finds the one to resume.
func openRun(r *recipes.Recipe, opts Options) (string, *Manifest, error) {
	if opts.Resume != "" {
		dir, err := FindRun(opts.RunsDir, opts.Resume)
		if err != nil {
			return "", nil, err
		}
		m, err := ReadManifest(dir)
		if err != nil {
			return "", nil, err
		}
		if m.RecipeHash != r.Hash() {
			return "", nil, Invalid(fmt.Errorf("resume %s: the recipe changed since the run started (hash %.12s, now %.12s); start a new run instead", m.RunID, m.RecipeHash, r.Hash()))
		}
		return dir, m, nil
	}
	id := newRunID()
	dir := filepath.Join(opts.RunsDir, r.Name, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create run folder: %w", err)
	}
	now := time.Now().UTC()
	m := &Manifest{
		RunID: id, RecipeName: r.Name, RecipeFile: r.File, RecipeHash: r.Hash(), Recipe: r.Redacted(),
		Overrides: opts.Overrides, Incremental: opts.Incremental, ToolVersion: opts.ToolVersion, Created: now, Status: StatusPending,
	}
	for _, name := range Order {
		m.Stages = append(m.Stages, &StageRecord{Name: name, Status: StatusPending})
	}
	return dir, m, nil
}

func newRunID() string {
	var b [3]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

type engine struct {
	r      *recipes.Recipe
	opts   Options
	runDir string
	m      *Manifest
	rep    Reporter
}

func (e *engine) report(ev Event) {
	ev.Time, ev.Run = time.Now().UTC(), e.m.RunID
	e.rep.Report(ev)
}

func (e *engine) run(ctx context.Context, from, until int) error {
	upstream := map[string]*StageRecord{}
	for i, name := range Order {
		if i > until {
			break
		}
		rec := e.m.Stage(name)
		st, built := e.opts.Stages[name]
		if !built {
			rec.Status = StatusNotBuilt
			e.m.Status = StatusIncomplete
			e.report(Event{Stage: name, Event: "not_built", Msg: "stage " + name + " is not built yet"})
			return writeManifest(e.runDir, e.m)
		}
		key, inputs, err := e.key(ctx, st, upstream)
		if err != nil {
			return fmt.Errorf("stage %s: %w", name, err)
		}
		rec.Inputs = inputs
		if e.m.Inputs == nil {
			e.m.Inputs = map[string]string{}
		}
		for k, v := range inputs {
			e.m.Inputs[k] = v
		}
		selected := i >= from && !e.opts.Force
		if i < from || selected {
			ok, err := e.reuse(rec, key)
			if err != nil {
				return err
			}
			if ok {
				upstream[name] = rec
				continue
			}
			if i < from {
				return Invalid(fmt.Errorf("stage %s has no finished result with the same inputs to start from; run it first (drop --from/--only)", name))
			}
		}
		if err := e.runStage(ctx, st, rec, key, upstream); err != nil {
			return err
		}
		upstream[name] = rec
	}
	e.m.Status = StatusDone
	if until < len(Order)-1 {
		e.m.Status = StatusIncomplete
	}
	return nil
}

// key hashes what determines a stage's result: its own key material and
// the outputs of every stage before it.
func (e *engine) key(ctx context.Context, st Stage, upstream map[string]*StageRecord) (string, map[string]string, error) {
	var k Key
	var err error
	if ik, ok := st.(IncrementalKeyer); ok && e.opts.Incremental {
		k, err = ik.IncrementalKey(ctx, e.r)
	} else {
		k, err = st.Key(ctx, e.r)
	}
	if err != nil {
		return "", nil, err
	}
	type up struct {
		Stage   string   `json:"stage"`
		Outputs []string `json:"outputs"`
	}
	material := struct {
		Stage    string            `json:"stage"`
		Version  string            `json:"version"`
		Config   any               `json:"config"`
		Inputs   map[string]string `json:"inputs"`
		Upstream []up              `json:"upstream"`
	}{Stage: st.Name(), Version: k.Version, Config: k.Config, Inputs: k.Inputs}
	for _, name := range Order {
		if rec := upstream[name]; rec != nil {
			u := up{Stage: name}
			for _, o := range rec.Outputs {
				u.Outputs = append(u.Outputs, o.Key+":"+o.SHA256)
			}
			material.Upstream = append(material.Upstream, u)
		}
	}
	data, err := json.Marshal(material)
	if err != nil {
		return "", nil, fmt.Errorf("stage %s key: %w", st.Name(), err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), k.Inputs, nil
}

// reuse marks rec as reused when this run already finished the stage with
// the same key, or when an earlier run of the recipe did (its outputs are
// linked in). It reports false when the stage must run.
func (e *engine) reuse(rec *StageRecord, key string) (bool, error) {
	dir := filepath.Join(e.runDir, rec.Name)
	if rec.Complete() && rec.Key == key {
		if err := verifyOutputs(dir, rec.Outputs); err == nil {
			if rec.Status == StatusDone {
				rec.Status, rec.ReusedFrom = StatusReused, e.m.RunID
			}
			e.report(Event{Stage: rec.Name, Event: "reused", Msg: "finished earlier in this run"})
			return true, writeManifest(e.runDir, e.m)
		} else {
			e.report(Event{Stage: rec.Name, Event: "log", Msg: "rerunning: " + err.Error()})
		}
	}
	src, srcRec := findCached(e.opts.RunsDir, e.r.Name, e.m.RunID, rec.Name, key)
	if srcRec == nil {
		return false, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("stage %s: %w", rec.Name, err)
	}
	if err := linkOutputs(filepath.Join(src, rec.Name), dir, srcRec.Outputs); err != nil {
		return false, fmt.Errorf("stage %s: reuse from %s: %w", rec.Name, srcRec.ReusedFrom, err)
	}
	*rec = StageRecord{Name: rec.Name, Status: StatusReused, Key: key, ReusedFrom: filepath.Base(src),
		Inputs: rec.Inputs, Outputs: srcRec.Outputs, Summary: srcRec.Summary, Seconds: srcRec.Seconds}
	e.report(Event{Stage: rec.Name, Event: "reused", Msg: "cached result of run " + filepath.Base(src)})
	return true, writeManifest(e.runDir, e.m)
}

func (e *engine) runStage(ctx context.Context, st Stage, rec *StageRecord, key string, upstream map[string]*StageRecord) error {
	name := st.Name()
	dir := filepath.Join(e.runDir, name)
	if rec.Key != key || e.opts.Force {
		// Partial work from other settings would be wrong here; an
		// interrupted attempt with the same key is kept for the stage to
		// pick up.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("stage %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("stage %s: %w", name, err)
	}
	if err := removeTempFiles(dir); err != nil {
		return fmt.Errorf("stage %s: %w", name, err)
	}
	now := time.Now().UTC()
	rec.Status, rec.Key, rec.ReusedFrom, rec.Error = StatusRunning, key, "", ""
	rec.Started, rec.Finished, rec.Outputs, rec.Summary = &now, nil, nil, nil
	rec.Attempts++
	if err := writeManifest(e.runDir, e.m); err != nil {
		return err
	}
	e.report(Event{Stage: name, Event: "start"})
	sc := &StageContext{
		Recipe: e.r, RunID: e.m.RunID, RunDir: e.runDir, Dir: dir, Upstream: upstream,
		Log:         slog.New(&logHandler{report: e.report, stage: name}),
		Incremental: e.opts.Incremental, Inputs: rec.Inputs,
	}
	sc.progress = func(done, total int64, unit string, fields map[string]any) {
		e.report(Event{Stage: name, Event: "progress", Done: done, Total: total, Unit: unit, Fields: fields})
	}
	runErr := st.Run(ctx, sc)
	fin := time.Now().UTC()
	rec.Finished, rec.Seconds, rec.Summary = &fin, fin.Sub(now).Seconds(), sc.summary
	if runErr != nil {
		rec.Status, rec.Error = StatusFailed, runErr.Error()
		if ctx.Err() != nil {
			rec.Status = StatusInterrupted
		}
		e.report(Event{Stage: name, Event: rec.Status, Msg: runErr.Error()})
		if err := writeManifest(e.runDir, e.m); err != nil {
			return err
		}
		return fmt.Errorf("stage %s: %w", name, runErr)
	}
	outs, err := hashOutputs(dir)
	if err != nil {
		return fmt.Errorf("stage %s: outputs: %w", name, err)
	}
	rec.Outputs, rec.Status = outs, StatusDone
	e.report(Event{Stage: name, Event: "done", Fields: sc.summary})
	return writeManifest(e.runDir, e.m)
}
