package pipeline

import (
	"reflect"
	"testing"
)

func TestSplitQuotas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes map[string]int
		limit int
		want  map[string]int
	}{
		{"quickstart", map[string]int{"train": 3590, "val": 389, "test": 993}, 800, map[string]int{"train": 578, "val": 62, "test": 160}},
		{"even", map[string]int{"train": 50, "test": 50}, 10, map[string]int{"train": 5, "test": 5}},
		{"ties by name", map[string]int{"a": 1, "b": 1, "c": 1}, 2, map[string]int{"a": 1, "b": 1, "c": 0}},
		{"one split", map[string]int{"train": 7}, 3, map[string]int{"train": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := splitQuotas(tc.sizes, tc.limit)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("splitQuotas(%v, %d) = %v, want %v", tc.sizes, tc.limit, got, tc.want)
			}
			sum := 0
			for _, n := range got {
				sum += n
			}
			if sum != tc.limit {
				t.Errorf("quotas add up to %d, want %d", sum, tc.limit)
			}
		})
	}
}
