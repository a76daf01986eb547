package model

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// TopTokens keeps a running top-k; it must equal a stable sort of the row.
func TestTopTokens(t *testing.T) {
	sorted := func(lp []float32, k int) []TokenProb {
		idx := make([]int, len(lp))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return lp[idx[a]] > lp[idx[b]] })
		out := []TokenProb{}
		for _, id := range idx[:min(k, len(lp))] {
			out = append(out, TokenProb{ID: id, Logprob: lp[id]})
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]float32, 5000)
	for i := range random {
		random[i] = float32(rng.NormFloat64())
	}
	ties := make([]float32, 300)
	for i := range ties {
		ties[i] = float32(i % 7) // many equal values: lower id first
	}
	for _, tc := range []struct {
		name string
		lp   []float32
		k    int
	}{
		{"random top 20", random, 20},
		{"random top 1", random, 1},
		{"ties", ties, 50},
		{"k over length", []float32{-1, -3, -2}, 5},
		{"k zero", []float32{-1, -2}, 0},
		{"empty", nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := TopTokens(tc.lp, tc.k), sorted(tc.lp, tc.k); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}
