// Package lora adds LoRA adapters (Hu et al. 2021) to the Llama-family
// student of package model, in the layout of HuggingFace PEFT: the same
// tensor names and shapes (lora_A [r, in], lora_B [out, r]), the same
// initialisation (lora_A Kaiming-uniform, lora_B zeros, so a fresh adapter
// changes nothing), the same scaling (alpha/r, or alpha/sqrt(r) with
// rsLoRA), and the same files (adapter_config.json and
// adapter_model.safetensors), so adapters trained here load in PEFT, vLLM
// and the like, and PEFT adapters load here.
//
// An Adapter holds the trainable tensors on the host. The trainer feeds them
// to the graph and wraps the base weights with Params; inference can run the
// base model plus the adapter (Model) or a merged copy (Merge, ExportMerged).
package lora

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/distillery/distillery/model"
)

// AllLinear is the target_modules shorthand for every linear layer of every
// decoder layer (q/k/v/o and gate/up/down); like PEFT's it leaves out the
// output layer lm_head.
const AllLinear = "all-linear"

// LinearModules are the HF names of a Llama decoder layer's linear layers,
// in the order the layer applies them.
var LinearModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// Config is a LoRA configuration, with the meaning of PEFT's LoraConfig.
type Config struct {
	// Rank is r, the inner dimension of the update B·A.
	Rank int
	// Alpha scales the update by Alpha/Rank (Alpha/sqrt(Rank) with RSLoRA).
	Alpha float64
	// Dropout is the dropout rate on the adapter's input during training.
	Dropout float64
	// TargetModules selects the linear layers that get adapters, as PEFT's
	// list form matches them: an entry selects a module whose path equals
	// it or ends with "." + it, so "q_proj" selects q_proj in every layer
	// and "model.layers.0.self_attn.q_proj" only layer 0's. AllLinear alone
	// selects all seven linear layers of every decoder layer.
	TargetModules []string
	// RSLoRA selects rank-stabilised scaling alpha/sqrt(r).
	RSLoRA bool
	// ModulesToSave lists modules trained as full copies: "lm_head" and/or
	// "embed_tokens". With tied embeddings the copies are untied: training
	// lm_head starts from the embedding and leaves the input embedding
	// alone, and training embed_tokens alone keeps the output layer on the
	// original embedding, as PEFT does (ensure_weight_tying false).
	ModulesToSave []string
}

// Scale is the factor of the update: alpha/r, or alpha/sqrt(r) with rsLoRA.
func (c Config) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.Rank))
	}
	return c.Alpha / float64(c.Rank)
}

// Adapter is a LoRA adapter for one model config: its configuration and its
// tensors, host float32 row-major, named as in the model with PEFT's
// suffixes: M.lora_A.weight [r, in] and M.lora_B.weight [out, r] for each
// targeted module M (model.layers.0.self_attn.q_proj), and the HF weight
// name (lm_head.weight, model.embed_tokens.weight) for each module to save.
type Adapter struct {
	Config      Config
	ModelConfig *model.Config // the config of the model the adapter belongs to

	modules []string             // targeted module paths, sorted
	saved   []string             // weight names of the modules to save, sorted
	tensors map[string][]float32 // every trainable tensor by name
	shapes  map[string][]int
}

// weight names of the modules that can be saved, by their modules_to_save entry.
var savable = map[string]string{
	"lm_head":            "lm_head.weight",
	"embed_tokens":       "model.embed_tokens.weight",
	"model.embed_tokens": "model.embed_tokens.weight",
}

const (
	embedWeight  = "model.embed_tokens.weight"
	lmHeadWeight = "lm_head.weight"
)

// New creates an adapter initialised as PEFT initialises one
// (init_lora_weights true): lora_A Kaiming-uniform with a = sqrt(5), which
// is uniform(-1/sqrt(in), 1/sqrt(in)), lora_B zeros, and the modules to
// save copied from base. The same seed gives the same adapter. base holds
// the model's weights by HF name; it may be nil when nothing is to be
// saved, and when given, the targeted weights must be in it with the
// config's shapes.
func New(cfg Config, mc *model.Config, seed uint64, base map[string][]float32) (*Adapter, error) {
	a, err := build(cfg, mc)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	shapes := model.WeightShapes(mc)
	if base != nil {
		for _, m := range a.modules {
			if err := checkLen(base, m+".weight", shapes[m+".weight"]); err != nil {
				return nil, fmt.Errorf("lora: base weights: %w", err)
			}
		}
	}
	for _, name := range a.saved {
		src := name
		if name == lmHeadWeight && mc.TieWordEmbeddings {
			src = embedWeight // the untied copy starts as the tied embedding
		}
		if base == nil {
			return nil, fmt.Errorf("lora: modules_to_save needs the base weights to copy %s", src)
		}
		if err := checkLen(base, src, shapes[src]); err != nil {
			return nil, fmt.Errorf("lora: base weights: %w", err)
		}
		a.tensors[name] = slices.Clone(base[src])
	}
	// torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) on w [r, in]: fan_in = in,
	// gain = sqrt(2/(1+a²)) = sqrt(1/3), bound = gain·sqrt(3/fan_in) = 1/sqrt(in).
	rng := rand.New(rand.NewPCG(seed, 0x10a))
	for _, m := range a.modules {
		A := a.tensors[m+".lora_A.weight"]
		bound := 1 / math.Sqrt(float64(a.shapes[m+".lora_A.weight"][1]))
		for i := range A {
			A[i] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	return a, nil
}

func checkLen(w map[string][]float32, name string, shape []int) error {
	v, ok := w[name]
	if !ok {
		return fmt.Errorf("%s is missing", name)
	}
	if n := numel(shape); len(v) != n {
		return fmt.Errorf("%s has %d values, shape %v needs %d", name, len(v), shape, n)
	}
	return nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// build validates cfg against mc and lays out zeroed tensors; its errors
// lack the "lora: " prefix that callers add.
func build(cfg Config, mc *model.Config) (*Adapter, error) {
	if mc == nil {
		return nil, fmt.Errorf("no model config")
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if cfg.Rank <= 0 {
		bad("rank must be positive, got %d", cfg.Rank)
	}
	if !(cfg.Alpha > 0) || math.IsInf(cfg.Alpha, 0) {
		bad("alpha must be positive and finite, got %v", cfg.Alpha)
	}
	if !(cfg.Dropout >= 0 && cfg.Dropout < 1) {
		bad("dropout must be in [0, 1), got %v", cfg.Dropout)
	}
	modules, err := resolveTargets(cfg.TargetModules, mc)
	if err != nil {
		bad("%v", err)
	}
	var saved []string
	for _, m := range cfg.ModulesToSave {
		name, ok := savable[m]
		if !ok {
			bad("modules_to_save %q is not supported (lm_head, embed_tokens)", m)
			continue
		}
		if !slices.Contains(saved, name) {
			saved = append(saved, name)
		}
	}
	sort.Strings(saved)
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}

	a := &Adapter{Config: cfg, ModelConfig: mc, modules: modules, saved: saved,
		tensors: map[string][]float32{}, shapes: map[string][]int{}}
	a.Config.TargetModules = slices.Clone(cfg.TargetModules)
	a.Config.ModulesToSave = slices.Clone(cfg.ModulesToSave)
	ws := model.WeightShapes(mc)
	for _, m := range modules {
		w := ws[m+".weight"] // [out, in]
		a.add(m+".lora_A.weight", []int{cfg.Rank, w[1]})
		a.add(m+".lora_B.weight", []int{w[0], cfg.Rank})
	}
	for _, name := range saved {
		a.add(name, []int{mc.VocabSize, mc.HiddenSize})
	}
	return a, nil
}

func (a *Adapter) add(name string, shape []int) {
	a.shapes[name] = shape
	a.tensors[name] = make([]float32, numel(shape))
}

// modulePaths lists every linear module path of mc's decoder layers.
func modulePaths(mc *model.Config) []string {
	var out []string
	for l := range mc.NumHiddenLayers {
		for _, m := range LinearModules {
			parent := "mlp"
			if i := slices.Index(LinearModules, m); i < 4 {
				parent = "self_attn" // q_proj, k_proj, v_proj, o_proj
			}
			out = append(out, fmt.Sprintf("model.layers.%d.%s.%s", l, parent, m))
		}
	}
	return out
}

// matches is PEFT's list matching: the path equals the entry or ends with
// "." + entry.
func matches(path, entry string) bool {
	return path == entry || strings.HasSuffix(path, "."+entry)
}

// resolveTargets turns target_modules into the sorted module paths they
// select. Every entry must select something, and nothing but the decoder
// layers' linear layers may be selected.
func resolveTargets(targets []string, mc *model.Config) ([]string, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("target_modules is empty: name the linear layers (q_proj, v_proj, ...) or all-linear")
	}
	paths := modulePaths(mc)
	if slices.Contains(targets, AllLinear) {
		if len(targets) > 1 {
			return nil, fmt.Errorf("target_modules: %s already covers every linear layer: list it alone", AllLinear)
		}
		sort.Strings(paths)
		return paths, nil
	}
	var errs []string
	selected := map[string]bool{}
	for _, t := range targets {
		if matches("lm_head", t) || matches("model.embed_tokens", t) {
			errs = append(errs, fmt.Sprintf("%q: LoRA on lm_head/embed_tokens is not supported (use modules_to_save)", t))
			continue
		}
		n := 0
		for _, p := range paths {
			if matches(p, t) {
				selected[p] = true
				n++
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Sprintf("%q matches no linear layer (%s, or all-linear)", t, strings.Join(LinearModules, ", ")))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("target_modules: %s", strings.Join(errs, "; "))
	}
	out := make([]string, 0, len(selected))
	for p := range selected {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// Modules lists the targeted module paths, sorted.
func (a *Adapter) Modules() []string { return slices.Clone(a.modules) }

// Saved lists the weight names of the modules to save, sorted.
func (a *Adapter) Saved() []string { return slices.Clone(a.saved) }

// Scale is the factor of the update, Config.Scale.
func (a *Adapter) Scale() float64 { return a.Config.Scale() }

// Names lists the trainable tensors' names, sorted.
func (a *Adapter) Names() []string {
	names := make([]string, 0, len(a.tensors))
	for n := range a.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Values returns the trainable tensors by name. The slices are the
// adapter's own (no copy: a saved embedding can be large); callers must not
// modify them, and use SetValues to change them.
func (a *Adapter) Values() map[string][]float32 {
	out := make(map[string][]float32, len(a.tensors))
	for n, v := range a.tensors {
		out[n] = v
	}
	return out
}

// Shapes returns the trainable tensors' shapes by name (copies).
func (a *Adapter) Shapes() map[string][]int {
	out := make(map[string][]int, len(a.shapes))
	for n, s := range a.shapes {
		out[n] = slices.Clone(s)
	}
	return out
}

// SetValues replaces the trainable tensors, after training, with copies of
// values. Every name of Names must be given, with its size, and no other;
// nothing changes on error.
func (a *Adapter) SetValues(values map[string][]float32) error {
	var errs []string
	for n, shape := range a.shapes {
		v, ok := values[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("%s is missing", n))
		case len(v) != numel(shape):
			errs = append(errs, fmt.Sprintf("%s has %d values, shape %v needs %d", n, len(v), shape, numel(shape)))
		}
	}
	for n := range values {
		if _, ok := a.shapes[n]; !ok {
			errs = append(errs, fmt.Sprintf("%s is not a tensor of this adapter", n))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("lora: set values: %s", strings.Join(errs, "; "))
	}
	for n, v := range values {
		a.tensors[n] = slices.Clone(v)
	}
	return nil
}

// Count returns the trainable parameters and the total the trained model
// has, as PEFT's print_trainable_parameters counts them: the base's
// parameters (base holds their shapes, e.g. model.WeightShapes) plus the
// adapter's, modules to save counting twice (original and copy).
func (a *Adapter) Count(base map[string][]int) (trainable, total int64) {
	for _, s := range a.shapes {
		trainable += int64(numel(s))
	}
	for _, s := range base {
		total += int64(numel(s))
	}
	return trainable, total + trainable
}

// unties reports whether the adapter's model has tied embeddings that the
// adapter unties: a module to save of a tied model gets its own copy, so
// the merged model has separate embed_tokens and lm_head weights.
func (a *Adapter) unties() bool { return a.ModelConfig.TieWordEmbeddings && len(a.saved) > 0 }

// saves reports whether name is the weight of a module to save.
func (a *Adapter) saves(name string) bool { return slices.Contains(a.saved, name) }

// targets reports whether module has an adapter.
func (a *Adapter) targets(module string) bool {
	_, ok := slices.BinarySearch(a.modules, module)
	return ok
}

// MergedConfig is the config of the merged model: a copy of the adapter's
// model config, untied (tie_word_embeddings false) when a module to save
// unties the embeddings.
func (a *Adapter) MergedConfig() *model.Config {
	c := *a.ModelConfig
	if a.unties() {
		c.TieWordEmbeddings = false
		if c.Extra != nil {
			c.Extra = maps.Clone(c.Extra)
			delete(c.Extra, "tie_embeddings")
		}
	}
	return &c
}
