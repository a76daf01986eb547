package lora

import (
	"fmt"
	"slices"
	"strings"

	"github.com/distillery/distillery/model"
	"github.com/gomlx/gomlx/core/graph"
)

// Params wraps the base weights of a forward pass with the adapter.
// trainable holds a node for every name of Names (the trainer's variables,
// or graph inputs). Linear(M, x) of a targeted module M computes PEFT's
//
//	x·Wᵀ + bias + scale · (dropout(x)·Aᵀ)·Bᵀ
//
// with the adapter nodes cast to x's dtype; dropout, called with
// Config.Dropout, may be nil (inference: no dropout) and is not called
// when the rate is 0. Get and Has give the trainable copies of the modules
// to save and the base weights otherwise. It panics when trainable lacks a
// name, as model.PlainParams does for a missing weight.
func (a *Adapter) Params(base model.PlainParams, trainable map[string]*graph.Node, dropout func(x *graph.Node, rate float64) *graph.Node) model.Params {
	var missing []string
	for n := range a.shapes {
		if _, ok := trainable[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		panic(fmt.Sprintf("lora: trainable nodes missing for %s", strings.Join(missing, ", ")))
	}
	return &params{a: a, base: base, tr: trainable, dropout: dropout}
}

type params struct {
	a       *Adapter
	base    model.PlainParams
	tr      map[string]*graph.Node
	dropout func(*graph.Node, float64) *graph.Node
}

// Get returns the trainable copy of a module to save, cast to the base
// embedding's dtype (the compute dtype), or the base weight.
func (p *params) Get(name string) *graph.Node {
	if p.a.saves(name) {
		return graph.ConvertDType(p.tr[name], p.base.Get(embedWeight).DType())
	}
	if name == lmHeadWeight && p.a.unties() && !p.base.Has(name) {
		// Tied model, embed_tokens trained, lm_head not: the output layer
		// keeps the original embedding, as in PEFT.
		return p.base.Get(embedWeight)
	}
	return p.base.Get(name)
}

func (p *params) Has(name string) bool {
	if p.a.saves(name) || (name == lmHeadWeight && p.a.unties()) {
		return true
	}
	return p.base.Has(name)
}

func (p *params) Linear(module string, x *graph.Node) *graph.Node {
	var y *graph.Node
	if w := module + ".weight"; p.a.saves(w) || !p.base.Has(w) {
		y = model.Dense(x, p.Get(w)) // lm_head: a copy to save, or untied from the embedding
	} else {
		y = p.base.Linear(module, x)
	}
	if !p.a.targets(module) {
		return y
	}
	h := x
	if rate := p.a.Config.Dropout; p.dropout != nil && rate > 0 {
		h = p.dropout(h, rate)
	}
	h = model.Dense(h, p.tr[module+".lora_A.weight"]) // [..., r]
	h = model.Dense(h, p.tr[module+".lora_B.weight"]) // [..., out]
	return graph.Add(y, graph.MulScalar(h, p.a.Scale()))
}

// inputPrefix marks the adapter's tensors among a Model's graph inputs.
const inputPrefix = "lora/"

// Model builds a model of the base weights plus the adapter (no dropout),
// for evaluation and generation without merging: the adapter's tensors
// become graph inputs next to the base weights and Params wraps every
// forward pass. opts.Params must be unset (it is taken). base must hold
// every weight of mc with its shape; mc must be the adapter's model
// config or one of the same shapes.
func (a *Adapter) Model(mc *model.Config, base map[string][]float32, opts model.LoadOptions) (*model.Model, error) {
	if opts.Params != nil {
		return nil, fmt.Errorf("lora: model: LoadOptions.Params is already set")
	}
	shapes := model.WeightShapes(mc)
	var errs []string
	for name, shape := range shapes {
		if err := checkLen(base, name, shape); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, m := range a.modules {
		w, ok := shapes[m+".weight"]
		if !ok || w[1] != a.shapes[m+".lora_A.weight"][1] || w[0] != a.shapes[m+".lora_B.weight"][0] {
			errs = append(errs, fmt.Sprintf("%s: the adapter's shapes do not fit this model config", m))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("lora: model: %s", strings.Join(errs, "; "))
	}
	host := make(map[string][]float32, len(shapes)+len(a.tensors))
	for name := range shapes {
		host[name] = base[name] // only the config's weights: New needs a shape for each
	}
	for name, v := range a.tensors {
		host[inputPrefix+name] = v
		shapes[inputPrefix+name] = a.shapes[name]
	}
	opts.Params = func(in model.PlainParams) model.Params {
		b, tr := model.PlainParams{}, map[string]*graph.Node{}
		for name, n := range in {
			if rest, ok := strings.CutPrefix(name, inputPrefix); ok {
				tr[rest] = n
			} else {
				b[name] = n
			}
		}
		return a.Params(b, tr, nil)
	}
	m, err := model.New(mc, host, shapes, opts)
	if err != nil {
		return nil, fmt.Errorf("lora: model: %w", err)
	}
	return m, nil
}
