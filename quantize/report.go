package quantize

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distillery/distillery/model"
)

// Sizes are a model's weight bytes, against a 16-bit copy of the same
// weights.
type Sizes struct {
	// LinearBytes is what the decoder's linear layers take (packed weights,
	// zero points and scales, biases); Linear16Bytes the same layers in
	// 16-bit, and LinearRatio their ratio.
	LinearBytes   int64   `json:"linear_bytes"`
	Linear16Bytes int64   `json:"linear_16bit_bytes"`
	LinearRatio   float64 `json:"linear_ratio"`
	// EmbeddingBytes counts embed_tokens and lm_head, kept 16-bit.
	EmbeddingBytes int64 `json:"embedding_bytes"`
	// OtherBytes counts the norms.
	OtherBytes int64 `json:"other_bytes"`
	// TotalBytes is all weights; Total16Bytes a 16-bit copy of the model.
	TotalBytes   int64 `json:"total_bytes"`
	Total16Bytes int64 `json:"total_16bit_bytes"`
}

// MemorySizes measures the weights a model holds in memory.
func MemorySizes(m *model.Model) Sizes {
	shapes := model.WeightShapes(m.Config)
	var s Sizes
	for name, t := range m.Tensors() {
		s.add(name, t.Shape().ByteSize(), shapes)
	}
	return s.finish()
}

// CheckpointSizes measures the tensors of a checkpoint folder as stored.
func CheckpointSizes(dir string) (Sizes, error) {
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return Sizes{}, err
	}
	w, err := model.OpenWeights(dir)
	if err != nil {
		return Sizes{}, err
	}
	defer w.Close()
	shapes := model.WeightShapes(cfg)
	var s Sizes
	for _, name := range w.Names() {
		info, _ := w.Info(name)
		s.add(name, info.End-info.Begin, shapes)
	}
	return s.finish(), nil
}

// add counts one tensor; the 16-bit reference counts each weight of the
// config once at 2 bytes.
func (s *Sizes) add(name string, bytes int64, shapes map[string][]int) {
	s.TotalBytes += bytes
	module := name[:strings.LastIndexByte(name, '.')]
	switch {
	case name == "model.embed_tokens.weight" || strings.HasPrefix(name, "lm_head."):
		s.EmbeddingBytes += bytes
		if shape, ok := shapes[name]; ok {
			s.Total16Bytes += 2 * elements(shape)
		}
	case strings.HasPrefix(name, "model.layers.") && isLinear(module, shapes):
		s.LinearBytes += bytes
		if shape, ok := shapes[name]; ok { // the float weight or bias this tensor is (or is part of)
			s.Linear16Bytes += 2 * elements(shape)
			s.Total16Bytes += 2 * elements(shape)
		} else if strings.HasSuffix(name, ".qweight") {
			shape := shapes[module+".weight"]
			s.Linear16Bytes += 2 * elements(shape)
			s.Total16Bytes += 2 * elements(shape)
		}
	default:
		s.OtherBytes += bytes
		if shape, ok := shapes[name]; ok {
			s.Total16Bytes += 2 * elements(shape)
		}
	}
}

func (s Sizes) finish() Sizes {
	if s.Linear16Bytes > 0 {
		s.LinearRatio = float64(s.LinearBytes) / float64(s.Linear16Bytes)
	}
	return s
}

func isLinear(module string, shapes map[string][]int) bool {
	shape, ok := shapes[module+".weight"]
	return ok && len(shape) == 2
}

func elements(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// ResidentBytes is the process's resident memory (VmRSS of
// /proc/self/status), 0 where that is unavailable.
func ResidentBytes() int64 {
	rss, _ := model.ProcessMemory()
	return rss
}

// DiskBytes is the size of a checkpoint folder's safetensors files.
func DiskBytes(dir string) int64 {
	var n int64
	matches, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	for _, p := range matches {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// PPL is a perplexity measurement.
type PPL struct {
	Perplexity float64 `json:"perplexity"`
	NLL        float64 `json:"nll"`    // mean negative log-likelihood per predicted token, nats
	Tokens     int     `json:"tokens"` // predicted tokens
}

// pplBatch is the number of sequences per forward pass in Perplexity.
const pplBatch = 4

// Perplexity is exp of the mean next-token negative log-likelihood of the
// sequences (each predicts its tokens 2..n). Batches are padded to one
// length and size so a single graph is compiled.
func Perplexity(ctx context.Context, m *model.Model, seqs [][]int) (PPL, error) {
	length := 0
	for _, s := range seqs {
		length = max(length, len(s))
	}
	if length < 2 {
		return PPL{}, fmt.Errorf("perplexity: no sequence has 2 tokens")
	}
	length = bucket(length, m.Config.MaxPositionEmbeddings)
	var nll float64
	var n int
	for start := 0; start < len(seqs); start += pplBatch {
		if err := ctx.Err(); err != nil {
			return PPL{}, err
		}
		batch := make([][]int, pplBatch)
		for i := range batch {
			batch[i] = make([]int, length)
			if start+i < len(seqs) {
				copy(batch[i], seqs[start+i])
			}
		}
		logits, err := m.Logits(batch)
		if err != nil {
			return PPL{}, fmt.Errorf("perplexity: %w", err)
		}
		for i := range batch {
			if start+i >= len(seqs) {
				break
			}
			s := seqs[start+i]
			for t := 0; t+1 < len(s); t++ {
				nll -= float64(model.LogProbs(logits[i][t])[s[t+1]])
				n++
			}
		}
	}
	if n == 0 {
		return PPL{}, fmt.Errorf("perplexity: no sequence has 2 tokens")
	}
	return PPL{Perplexity: math.Exp(nll / float64(n)), NLL: nll / float64(n), Tokens: n}, nil
}

// Windows cuts a token stream into consecutive windows of length tokens
// (the last one shorter), the usual perplexity evaluation.
func Windows(ids []int, length int) [][]int {
	var out [][]int
	for start := 0; start < len(ids); start += length {
		out = append(out, ids[start:min(start+length, len(ids))])
	}
	return out
}

// Variant is one model of a Report: full precision or a quantization.
type Variant struct {
	Name       string   `json:"name"` // "fp", "rtn-g128", "awq-g128", ...
	Method     string   `json:"method"`
	GroupSize  int      `json:"group_size,omitempty"`
	Perplexity PPL      `json:"perplexity"`
	Metric     *float64 `json:"metric,omitempty"` // the task metric, when the caller gives one
	Memory     Sizes    `json:"memory"`           // weights in memory
	Disk       *Sizes   `json:"disk,omitempty"`   // tensors as stored, when saved
	DiskBytes  int64    `json:"disk_bytes,omitempty"`
	// ResidentBytes is the process's resident memory after loading and
	// evaluating this variant (VmRSS, all variants of the process together).
	ResidentBytes int64   `json:"resident_bytes"`
	Seconds       float64 `json:"quantize_seconds,omitempty"`
	// PerplexityIncrease is Perplexity - the fp variant's.
	PerplexityIncrease float64 `json:"perplexity_increase"`
	// Groups is AWQ's scale search per group of layers.
	Groups []GroupReport `json:"groups,omitempty"`
}

// Report sets full precision, RTN and AWQ side by side.
type Report struct {
	MetricName        string    `json:"metric_name,omitempty"`
	CalibrationSeqs   int       `json:"calibration_sequences"`
	EvaluationSeqs    int       `json:"evaluation_sequences"`
	EvaluationTokens  int       `json:"evaluation_tokens"`
	Variants          []Variant `json:"variants"`
	CalibrationTokens int       `json:"calibration_tokens,omitempty"`
}

// CompareOptions configure Compare.
type CompareOptions struct {
	// GroupSizes to try (default 128); each gives an RTN and an AWQ variant.
	GroupSizes []int
	// Methods to compare beside fp (default rtn, awq).
	Methods    []string
	ClipSearch bool
	// ModulesToNotConvert as in Options.
	ModulesToNotConvert []string
	// Metric, when set, computes the task metric of each variant (the
	// caller's eval); MetricName names it in the report.
	Metric     func(ctx context.Context, name string, m *model.Model) (float64, error)
	MetricName string
	// Dir, when set, saves each quantized variant into Dir/<name> and
	// evaluates the checkpoint loaded back with Load.
	Dir string
	// Progress reports each step by name.
	Progress func(step string)
}

// Compare evaluates the float model and its quantizations on the same
// held-out sequences (which should be disjoint from calib): perplexity,
// the optional task metric, and weight bytes against a 16-bit copy.
func Compare(ctx context.Context, fp *model.Model, calib, eval [][]int, opts CompareOptions) (*Report, error) {
	if len(opts.GroupSizes) == 0 {
		opts.GroupSizes = []int{128}
	}
	if len(opts.Methods) == 0 {
		opts.Methods = []string{MethodRTN, MethodAWQ}
	}
	step := func(s string) {
		if opts.Progress != nil {
			opts.Progress(s)
		}
	}
	rep := &Report{MetricName: opts.MetricName, CalibrationSeqs: len(calib), EvaluationSeqs: len(eval)}
	evalOne := func(name string, m *model.Model, v *Variant) error {
		step("evaluate " + name)
		p, err := Perplexity(ctx, m, eval)
		if err != nil {
			return err
		}
		v.Perplexity = p
		rep.EvaluationTokens = p.Tokens
		if opts.Metric != nil {
			x, err := opts.Metric(ctx, name, m)
			if err != nil {
				return fmt.Errorf("metric %s: %w", name, err)
			}
			v.Metric = &x
		}
		v.Memory = MemorySizes(m)
		v.ResidentBytes = ResidentBytes()
		return nil
	}
	base := Variant{Name: "fp", Method: "fp"}
	if err := evalOne("fp", fp, &base); err != nil {
		return nil, err
	}
	rep.Variants = append(rep.Variants, base)
	for gi, g := range opts.GroupSizes {
		for _, method := range opts.Methods {
			name := fmt.Sprintf("%s-g%d", method, g)
			if method == MethodINT8 {
				if gi > 0 {
					continue // no group size: once is enough
				}
				name = method
			}
			step("quantize " + name)
			start := time.Now()
			res, err := Quantize(ctx, fp, calib, Options{Method: method, GroupSize: g, ClipSearch: opts.ClipSearch, ModulesToNotConvert: opts.ModulesToNotConvert})
			if err != nil {
				return nil, err
			}
			v := Variant{Name: name, Method: method, GroupSize: g, Seconds: time.Since(start).Seconds(), Groups: res.Groups}
			rep.CalibrationTokens = max(rep.CalibrationTokens, res.CalibrationTokens)
			var qm *model.Model
			if opts.Dir != "" {
				dir := filepath.Join(opts.Dir, name)
				if err := res.Save(dir); err != nil {
					return nil, err
				}
				if qm, err = Load(dir, model.LoadOptions{Backend: fp.Backend}); err != nil {
					return nil, err
				}
				ds, err := CheckpointSizes(dir)
				if err != nil {
					return nil, err
				}
				v.Disk, v.DiskBytes = &ds, DiskBytes(dir)
			} else if qm, err = res.Model(model.LoadOptions{Backend: fp.Backend}); err != nil {
				return nil, err
			}
			if err := evalOne(name, qm, &v); err != nil {
				return nil, err
			}
			v.PerplexityIncrease = v.Perplexity.Perplexity - base.Perplexity.Perplexity
			rep.Variants = append(rep.Variants, v)
		}
	}
	return rep, nil
}

// Table renders the report as aligned text, one variant a line.
func (r *Report) Table() string {
	var b strings.Builder
	metric := r.MetricName
	if metric == "" {
		metric = "metric"
	}
	fmt.Fprintf(&b, "%-10s %12s %10s %10s %12s %12s %8s %12s\n", "variant", "perplexity", "increase", metric, "linear MB", "16-bit MB", "ratio", "RSS MB")
	for _, v := range r.Variants {
		m := "-"
		if v.Metric != nil {
			m = fmt.Sprintf("%.4f", *v.Metric)
		}
		fmt.Fprintf(&b, "%-10s %12.4f %10.4f %10s %12.3f %12.3f %8.3f %12.1f\n", v.Name, v.Perplexity.Perplexity, v.PerplexityIncrease, m,
			float64(v.Memory.LinearBytes)/1e6, float64(v.Memory.Linear16Bytes)/1e6, float64(v.Memory.LinearBytes)/float64(max(v.Memory.Linear16Bytes, 1)),
			float64(v.ResidentBytes)/(1<<20))
	}
	return b.String()
}
