package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/distillery/distillery/model"
)

// The file names of a PEFT adapter folder.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// keyPrefix starts every tensor key of a PEFT causal-LM adapter: the
// PeftModel's base_model (LoraModel) wraps the transformers model as .model.
const keyPrefix = "base_model.model."

// Save writes the adapter into dir in PEFT's format with float32 tensors;
// see SaveAs.
func (a *Adapter) Save(dir, baseModel string) error { return a.SaveAs(dir, baseModel, model.F32) }

// SaveAs writes the adapter into dir as PEFT's save_pretrained does:
// adapter_model.safetensors (tensors in dtype F32, BF16 or F16, keys
// base_model.model.<name> with the adapter name "default" left out, as
// get_peft_model_state_dict writes them) and then adapter_config.json.
// baseModel becomes base_model_name_or_path. Each file is replaced
// atomically.
func (a *Adapter) SaveAs(dir, baseModel string, dtype model.DType) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	var ts []model.Tensor
	for _, n := range a.Names() {
		ts = append(ts, model.NewTensor(keyPrefix+n, dtype, a.shapes[n], a.tensors[n]))
	}
	if err := model.WriteSafetensors(filepath.Join(dir, WeightsFile), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	cfg, err := a.configJSON(baseModel)
	if err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, ConfigFile), cfg); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	return nil
}

// configJSON is adapter_config.json with the fields PEFT 0.19 writes for a
// plain LoRA (LoraConfig and PeftConfig, asdict), as json.dumps(indent=2,
// sort_keys=True) formats them; peft_version is left out, this not being
// PEFT. target_modules is the configured list, except that all-linear is
// written expanded to the full module paths, as PEFT (since 0.14,
// tuners_utils._maybe_include_all_linear_layers) stores it.
func (a *Adapter) configJSON(baseModel string) ([]byte, error) {
	targets := a.Config.TargetModules
	if slices.Contains(targets, AllLinear) {
		targets = a.modules
	}
	targets = slices.Clone(targets)
	sort.Strings(targets)
	targets = slices.Compact(targets)
	var toSave any // null when empty, as PEFT writes None
	if len(a.Config.ModulesToSave) > 0 {
		s := slices.Clone(a.Config.ModulesToSave)
		sort.Strings(s)
		toSave = slices.Compact(s)
	}
	var base any
	if baseModel != "" {
		base = baseModel
	}
	empty := map[string]any{}
	cfg := map[string]any{
		"alora_invocation_tokens": nil,
		"alpha_pattern":           empty,
		"arrow_config":            nil,
		"auto_mapping":            nil,
		"base_model_name_or_path": base,
		"bias":                    "none",
		"corda_config":            nil,
		"ensure_weight_tying":     false,
		"eva_config":              nil,
		"exclude_modules":         nil,
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"loftq_config":            empty,
		"lora_alpha":              a.Config.Alpha,
		"lora_bias":               false,
		"lora_dropout":            a.Config.Dropout,
		"lora_ga_config":          nil,
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         toSave,
		"peft_type":               "LORA",
		"qalora_group_size":       16,
		"r":                       a.Config.Rank,
		"rank_pattern":            empty,
		"revision":                nil,
		"target_modules":          targets,
		"target_parameters":       nil,
		"task_type":               "CAUSAL_LM",
		"trainable_token_indices": nil,
		"use_bdlora":              nil,
		"use_dora":                false,
		"use_qalora":              false,
		"use_rslora":              a.Config.RSLoRA,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil // PEFT writes no final newline
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, synced and renamed over path, so readers see the old file or the
// whole new one.
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
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
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return nil
}

// Load reads a PEFT LoRA adapter folder (adapter_config.json and
// adapter_model.safetensors, as written by Save or by PEFT) for the model
// config mc. Tensor keys may carry the adapter name (lora_A.default.weight,
// lm_head.modules_to_save.default.weight) or not; every tensor the config
// implies must be present with its shape, and no other. Settings that
// change the math and that this package does not implement (DoRA, bias
// training, rank or alpha patterns, layers_to_transform, target_modules as
// a regular expression, ...) fail by name.
func Load(dir string, mc *model.Config) (*Adapter, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("lora: load %s: %w", dir, err)
	}
	cfg, err := parseConfig(raw, mc)
	if err != nil {
		return nil, fmt.Errorf("lora: load %s: %s: %w", dir, ConfigFile, err)
	}
	a, err := build(cfg, mc)
	if err != nil {
		return nil, fmt.Errorf("lora: load %s: %w", dir, err)
	}
	path := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, "adapter_model.bin")); err == nil {
			return nil, fmt.Errorf("lora: load %s: only %s is supported, not adapter_model.bin (pickle)", dir, WeightsFile)
		}
	}
	f, err := model.OpenSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("lora: load %s: %w", dir, err)
	}
	defer f.Close()
	var problems []string
	seen := map[string]string{} // tensor name -> file key
	for _, key := range f.Header.Names {
		name, ok := tensorName(key)
		shape, known := a.shapes[name]
		switch {
		case !ok || !known:
			problems = append(problems, fmt.Sprintf("%s: not a tensor of this adapter (config implies %s)", key, describe(a)))
			continue
		case seen[name] != "":
			problems = append(problems, fmt.Sprintf("%s: duplicates %s", key, seen[name]))
			continue
		}
		seen[name] = key
		t, err := f.Tensor(key)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if !slices.Equal(t.Shape, shape) {
			problems = append(problems, fmt.Sprintf("%s: shape %v, want %v", key, t.Shape, shape))
			continue
		}
		v, err := t.Float32()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		a.tensors[name] = v
	}
	for name := range a.shapes {
		if seen[name] == "" {
			problems = append(problems, fmt.Sprintf("%s%s: missing", keyPrefix, name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("lora: load %s: %s", path, strings.Join(problems, "; "))
	}
	return a, nil
}

// describe summarises an adapter's expected tensors for error messages.
func describe(a *Adapter) string {
	s := fmt.Sprintf("lora_A/lora_B of %d module(s)", len(a.modules))
	if len(a.saved) > 0 {
		s += " and " + strings.Join(a.saved, ", ")
	}
	return s
}

// tensorName maps a PEFT file key to the adapter's tensor name: the
// base_model.model. prefix goes, and so does the adapter name "default"
// that a state dict taken without get_peft_model_state_dict keeps.
func tensorName(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", false
	}
	for _, r := range []struct{ old, new string }{
		{".lora_A.default.weight", ".lora_A.weight"},
		{".lora_B.default.weight", ".lora_B.weight"},
		{".modules_to_save.default.weight", ".weight"},
	} {
		if s, ok := strings.CutSuffix(name, r.old); ok {
			return s + r.new, true
		}
	}
	return name, true
}

// harmless are adapter_config.json fields that do not change the math.
var harmless = map[string]bool{
	"base_model_name_or_path": true, "revision": true, "peft_version": true, "auto_mapping": true,
	"inference_mode": true, "megatron_core": true, "qalora_group_size": true, "loftq_config": true,
	"runtime_config": true, "layers_pattern": true,
}

// parseConfig reads adapter_config.json into a Config, failing by name on
// settings that would make the adapter compute something else here than in
// PEFT.
func parseConfig(data []byte, mc *model.Config) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, err
	}
	var cfg Config
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	get := func(name string, into any) bool {
		v, ok := raw[name]
		if !ok || isNull(v) {
			return false
		}
		if err := json.Unmarshal(v, into); err != nil {
			bad("%s: %v", name, err)
			return false
		}
		return true
	}
	var peftType string
	if get("peft_type", &peftType); peftType != "LORA" {
		bad("peft_type %q: only LORA is supported", peftType)
	}
	var task string
	if get("task_type", &task) && task != "CAUSAL_LM" {
		bad("task_type %q: only CAUSAL_LM is supported", task)
	}
	if !get("r", &cfg.Rank) {
		cfg.Rank = 8 // PEFT's default
	}
	if !get("lora_alpha", &cfg.Alpha) {
		cfg.Alpha = 8
	}
	get("lora_dropout", &cfg.Dropout)
	get("use_rslora", &cfg.RSLoRA)
	if v, ok := raw["target_modules"]; ok && !isNull(v) {
		var s string
		if json.Unmarshal(v, &s) == nil {
			if strings.ToLower(s) != AllLinear {
				bad("target_modules %q is a regular expression: only a list of module names (or all-linear) is supported", s)
			}
			cfg.TargetModules = []string{AllLinear}
		} else if err := json.Unmarshal(v, &cfg.TargetModules); err != nil {
			bad("target_modules: want a list of module names: %v", err)
		}
	} else {
		bad("target_modules is missing: PEFT would pick its per-architecture default; list the modules")
	}
	get("modules_to_save", &cfg.ModulesToSave)
	var bias string
	if get("bias", &bias) && bias != "none" {
		bad("bias %q: only none is supported (biases are not trained)", bias)
	}
	var init any
	if get("init_lora_weights", &init) {
		switch init {
		case true, false, "gaussian":
		default:
			bad("init_lora_weights %v: only true, false and gaussian are supported (PiSSA, OLoRA, LoftQ, CorDA and others rewrite the base weights)", init)
		}
	}
	var tie bool
	if get("ensure_weight_tying", &tie) && tie && mc.TieWordEmbeddings && len(cfg.ModulesToSave) > 0 {
		bad("ensure_weight_tying true with modules_to_save on a tied model is not supported")
	}
	known := map[string]bool{"peft_type": true, "task_type": true, "r": true, "lora_alpha": true,
		"lora_dropout": true, "use_rslora": true, "target_modules": true, "modules_to_save": true,
		"bias": true, "init_lora_weights": true, "ensure_weight_tying": true}
	var unsupported []string
	for k, v := range raw {
		if known[k] || harmless[k] || isInactive(v) {
			continue
		}
		unsupported = append(unsupported, fmt.Sprintf("%s = %s", k, compact(v)))
	}
	sort.Strings(unsupported)
	for _, u := range unsupported {
		bad("%s is not supported", u)
	}
	if len(errs) > 0 {
		return Config{}, errors.New(strings.Join(errs, "; "))
	}
	return cfg, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// isInactive reports a value that leaves a PEFT option off: null, false,
// an empty string, list or object.
func isInactive(v json.RawMessage) bool {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	switch x := x.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	s := b.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
