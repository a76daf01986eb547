package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
)

// RandomWeights initialises every weight of cfg as HF does for a fresh
// model: normal(0, std) for matrices, ones for norm weights, zeros for
// biases. The same seed gives the same weights.
func RandomWeights(cfg *Config, seed uint64, std float64) map[string][]float32 {
	shapes := WeightShapes(cfg)
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := map[string][]float32{}
	for _, n := range names {
		size := 1
		for _, d := range shapes[n] {
			size *= d
		}
		v := make([]float32, size)
		switch {
		case len(shapes[n]) == 1 && strings.HasSuffix(n, "norm.weight"):
			for i := range v {
				v[i] = 1
			}
		case len(shapes[n]) == 1: // bias
		default:
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		out[n] = v
	}
	return out
}

// SaveCheckpoint writes config.json and model.safetensors (sharded above
// maxShardBytes, when positive) in HF format into dir.
func SaveCheckpoint(dir string, cfg *Config, weights map[string][]float32, dtype DType, maxShardBytes int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	shapes := WeightShapes(cfg)
	var ts []Tensor
	for name, v := range weights {
		shape, ok := shapes[name]
		if !ok {
			return fmt.Errorf("save %s: unexpected weight %s", dir, name)
		}
		ts = append(ts, NewTensor(name, dtype, shape, v))
	}
	switch dtype {
	case BF16:
		cfg.TorchDType = "bfloat16"
	case F16:
		cfg.TorchDType = "float16"
	default:
		cfg.TorchDType = "float32"
	}
	if err := WriteWeights(dir, ts, map[string]string{"format": "pt"}, maxShardBytes); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	return cfg.Save(dir)
}
