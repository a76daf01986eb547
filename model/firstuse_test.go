package model

import (
	"context"
	"sync"
	"testing"
)

// TestConcurrentFirstUse runs the first calls of a fresh model from many
// goroutines at once: full forward passes, cached generation and pooled
// hidden states. Run under -race: the weights must already be on the
// device, not moved there lazily by whichever call comes first.
func TestConcurrentFirstUse(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(cfg, RandomWeights(cfg, 7, 0.3), WeightShapes(cfg), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch i % 3 {
			case 0:
				_, err = m.Logits([][]int{{1, 2, 3, i}})
			case 1:
				_, err = m.Generate(context.Background(), [][]int{{4, 5, i}}, GenerateOptions{MaxNewTokens: 3}, nil)
			case 2:
				_, err = m.MeanHidden([][]int{{6, 7, i}})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
