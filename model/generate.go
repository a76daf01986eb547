package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// GenerateOptions control sampling.
type GenerateOptions struct {
	MaxNewTokens int     // tokens to generate at most per sequence
	Temperature  float64 // 0: greedy
	TopP         float64 // nucleus sampling mass; 0 or 1: off
	Seed         uint64  // sampling seed
	StopIDs      []int   // generation ends after one of these (it is included in IDs)
	TopLogprobs  int     // alternatives reported per step (0..20)
}

// TokenProb is a token id with its log-probability.
type TokenProb struct {
	ID      int     `json:"id"`
	Logprob float32 `json:"logprob"`
}

// Step is one generated token: its id and log-probability under the model
// (before temperature), and the top alternatives, most likely first. This
// is the soft-label format.
type Step struct {
	ID      int         `json:"id"`
	Logprob float32     `json:"logprob"`
	Top     []TokenProb `json:"top,omitempty"`
}

// Sequence is one generation result.
type Sequence struct {
	Prompt       []int  `json:"prompt"`
	Steps        []Step `json:"steps"`
	FinishReason string `json:"finish_reason"` // "stop" or "length"
}

// IDs returns the generated token ids.
func (s Sequence) IDs() []int {
	ids := make([]int, len(s.Steps))
	for i, st := range s.Steps {
		ids[i] = st.ID
	}
	return ids
}

// StepFunc sees each token as it is decided; returning true ends that
// sequence (a stop string was reached), an error ends the generation.
type StepFunc func(seq int, s Step) (stop bool, err error)

// Generate continues each prompt with a KV cache: one prefill pass over the
// (right-padded) prompts, then one cached step per token for the batch.
func (m *Model) Generate(ctx context.Context, prompts [][]int, opts GenerateOptions, onStep StepFunc) ([]Sequence, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	if opts.TopLogprobs < 0 || opts.TopLogprobs > 20 {
		return nil, fmt.Errorf("generate: top_logprobs %d out of range [0, 20]", opts.TopLogprobs)
	}
	b := len(prompts)
	if b == 0 || opts.MaxNewTokens <= 0 {
		return make([]Sequence, b), nil
	}
	maxPrompt := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("generate: prompt %d is empty", i)
		}
		maxPrompt = max(maxPrompt, len(p))
	}
	total := maxPrompt + opts.MaxNewTokens
	if total > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("generate: prompt (%d) + max new tokens (%d) exceed max_position_embeddings %d: %w",
			maxPrompt, opts.MaxNewTokens, m.Config.MaxPositionEmbeddings, ErrTooLong)
	}
	cacheLen := min(bucket(total), m.Config.MaxPositionEmbeddings)
	prefill := min(PadLen(maxPrompt), cacheLen)
	idT, posT, err := m.batch(prompts, prefill, 0)
	if err != nil {
		return nil, err
	}
	last := make([]int32, b)
	for i, p := range prompts {
		last[i] = int32(len(p) - 1)
	}
	pre, err := m.prefillExec(cacheLen)
	if err != nil {
		return nil, err
	}
	out, err := pre.Exec(m.args(idT, posT, tensors.FromFlatDataAndDimensions(last, b, 1))...)
	if err != nil {
		return nil, fmt.Errorf("prefill: %w", err)
	}
	logprobs := tensors.MustCopyFlatData[float32](out[0])
	out[0].FinalizeAll()
	cache := out[1:]
	v := m.Config.VocabSize
	rows := make([][]float32, b)
	for i := range b {
		rows[i] = logprobs[i*v : (i+1)*v]
	}

	rng := rand.New(rand.NewPCG(opts.Seed, 0xd15711))
	seqs := make([]Sequence, b)
	done := make([]bool, b)
	for i, p := range prompts {
		seqs[i].Prompt = p
	}
	for step := 0; ; step++ {
		if err := ctx.Err(); err != nil {
			return seqs, err
		}
		next := make([][]int, b)
		active := 0
		for i := range b {
			if done[i] {
				next[i] = []int{0}
				continue
			}
			st := choose(rows[i], opts, rng)
			seqs[i].Steps = append(seqs[i].Steps, st)
			stop := false
			if onStep != nil {
				if stop, err = onStep(i, st); err != nil {
					return seqs, err
				}
			}
			switch {
			case stop || slices.Contains(opts.StopIDs, st.ID):
				done[i], seqs[i].FinishReason = true, "stop"
			case len(seqs[i].Steps) >= opts.MaxNewTokens:
				done[i], seqs[i].FinishReason = true, "length"
			default:
				active++
			}
			next[i] = []int{st.ID}
		}
		if active == 0 {
			return seqs, nil
		}
		pos := make([]int32, b)
		ids := make([]int32, b)
		for i := range b {
			pos[i] = int32(len(prompts[i]) + len(seqs[i].Steps) - 1)
			if done[i] {
				pos[i] = int32(cacheLen - 1) // a finished row writes its padding at the end
			}
			ids[i] = int32(next[i][0])
		}
		logprobs, cache, err = m.step(tensors.FromFlatDataAndDimensions(ids, b, 1), tensors.FromFlatDataAndDimensions(pos, b, 1),
			tensors.FromFlatDataAndDimensions(make([]int32, b), b, 1), cache)
		if err != nil {
			return seqs, err
		}
		for i := range b {
			rows[i] = logprobs[i*v : (i+1)*v]
		}
	}
}

// ErrTooLong reports a prompt that does not fit the model's context.
var ErrTooLong = fmt.Errorf("sequence too long")

// PadLen rounds a sequence length up to a power of two or 1.5 times one
// (16, 24, 32, 48, 64, 96, ...): a pass costs what its padded length does,
// and each length compiles its own graph, so a few sizes serve all.
func PadLen(n int) int {
	b := 16
	for b < n {
		if b*3/2 >= n {
			return b * 3 / 2
		}
		b *= 2
	}
	return b
}

// bucket rounds a length up to a power of two (at least 16), so that few
// graph shapes need compiling.
func bucket(n int) int {
	b := 16
	for b < n {
		b *= 2
	}
	return b
}

// prefillExec returns the prefill compiled for caches of cacheLen
// positions: it runs the prompts, builds the caches on the device (nothing
// the size of a cache crosses from the host), and returns the log-probs at
// each row's last prompt token, then the caches.
func (m *Model) prefillExec(cacheLen int) (*graph.Exec, error) {
	m.preMu.Lock()
	defer m.preMu.Unlock()
	if e, ok := m.pre[cacheLen]; ok {
		return e, nil
	}
	nw := len(m.names)
	e, err := graph.NewExec(m.Backend, func(g *graph.Graph, in []*graph.Node) []*graph.Node {
		logits, kv := Forward(m.Config, m.params(in), Inputs{IDs: in[nw], Positions: in[nw+1], CacheLen: cacheLen, At: in[nw+2]})
		out := []*graph.Node{graph.LogSoftmax(logits, -1)}
		for _, c := range kv {
			out = append(out, c.K, c.V)
		}
		return out
	})
	if err != nil {
		return nil, err
	}
	if m.pre == nil {
		m.pre = map[int]*graph.Exec{}
	}
	m.pre[cacheLen] = e
	return e, nil
}

// step runs the cached forward pass and returns log-probs on the host,
// computed on the device. Only those at last ([batch, 1]: one index per row)
// come back: [batch, vocab].
func (m *Model) step(ids, pos, last *tensors.Tensor, cache []*tensors.Tensor) ([]float32, []*tensors.Tensor, error) {
	args := m.args(ids, pos)
	for _, c := range cache {
		args = append(args, c)
	}
	args = append(args, last)
	out, err := m.stepExec.Exec(args...)
	if err != nil {
		return nil, nil, fmt.Errorf("forward step: %w", err)
	}
	for _, c := range cache {
		c.FinalizeAll()
	}
	lp := tensors.MustCopyFlatData[float32](out[0])
	out[0].FinalizeAll()
	return lp, out[1:], nil
}

// choose picks the next token from a row of log-probs and reports its
// log-probability and the top alternatives under the untempered distribution.
func choose(lp []float32, o GenerateOptions, rng *rand.Rand) Step {
	var id int
	if o.Temperature <= 0 {
		id = argmax(lp)
	} else {
		id = sample(lp, o.Temperature, o.TopP, rng)
	}
	st := Step{ID: id, Logprob: lp[id]}
	if o.TopLogprobs > 0 {
		st.Top = TopTokens(lp, o.TopLogprobs)
	}
	return st
}

// LogProbs returns log-probabilities of logits, computed stably in f64.
func LogProbs(logits []float32) []float32 {
	mx := math.Inf(-1)
	for _, x := range logits {
		mx = math.Max(mx, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float32, len(logits))
	for i, x := range logits {
		out[i] = float32(float64(x) - lse)
	}
	return out
}

// TopTokens returns the k largest entries, largest first (ties: lower id
// first). It keeps a sorted list of k while scanning, not a sort of the
// whole vocabulary: a step's top-20 of 128k log-probs costs one pass.
func TopTokens(lp []float32, k int) []TokenProb {
	k = min(k, len(lp))
	out := make([]TokenProb, 0, k)
	if k <= 0 {
		return out
	}
	for id, x := range lp {
		if len(out) == k && !(x > out[k-1].Logprob) {
			continue
		}
		i := sort.Search(len(out), func(j int) bool { return out[j].Logprob < x })
		if len(out) < k {
			out = append(out, TokenProb{})
		}
		copy(out[i+1:], out[i:len(out)-1])
		out[i] = TokenProb{ID: id, Logprob: x}
	}
	return out
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// sample draws from softmax(lp/temperature) (lp: log-probs or logits of
// a row), restricted to the smallest set of tokens whose mass reaches topP.
func sample(lp []float32, temperature, topP float64, rng *rand.Rand) int {
	scaled := make([]float32, len(lp))
	for i, x := range lp {
		scaled[i] = float32(float64(x) / temperature)
	}
	p := LogProbs(scaled)
	if topP <= 0 || topP >= 1 {
		// No nucleus: one pass in id order, no sort of the vocabulary.
		r := rng.Float64()
		var acc float64
		for id, x := range p {
			acc += math.Exp(float64(x))
			if r < acc {
				return id
			}
		}
		return argmax(p) // the sum fell short of r by rounding
	}
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	var mass float64
	cut := len(idx)
	for i, id := range idx {
		mass += math.Exp(float64(p[id]))
		if mass >= topP {
			cut = i + 1
			break
		}
	}
	r := rng.Float64() * mass
	var acc float64
	for _, id := range idx[:cut] {
		acc += math.Exp(float64(p[id]))
		if r < acc {
			return id
		}
	}
	return idx[cut-1]
}

func shapesFor(dt dtypes.DType, dims ...int) shapes.Shape { return shapes.Make(dt, dims...) }

// RelativeError is max|got-want| / max|want| over a logits row: relative
// to the row's scale, so near-zero logits do not dominate.
func RelativeError(got, want []float32) float64 {
	var diff, scale float64
	for i := range want {
		diff = math.Max(diff, math.Abs(float64(got[i]-want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	return diff / math.Max(scale, 1e-12)
}
