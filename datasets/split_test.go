package datasets

import (
	"fmt"
	"math"
	"testing"
)

func TestSplitOfFractions(t *testing.T) {
	for _, f := range []Fractions{{0.8, 0.1, 0.1}, {0.5, 0.25, 0.25}, {0.9, 0, 0.1}, {0.7, 0.3, 0}} {
		counts := map[string]int{}
		const n = 10000
		for i := range n {
			counts[SplitOf(fmt.Sprintf("key-%d", i), "seed", f)]++
		}
		for split, want := range map[string]float64{"train": f.Train, "val": f.Val, "test": f.Test} {
			got := float64(counts[split]) / n
			// 5 standard deviations of a binomial share, at least 0.5%.
			tol := math.Max(0.005, 5*math.Sqrt(want*(1-want)/n))
			if math.Abs(got-want) > tol {
				t.Errorf("%+v: %s share %.4f, want %.2f ± %.4f", f, split, got, want, tol)
			}
			if want == 0 && counts[split] != 0 {
				t.Errorf("%+v: %d keys in empty split %s", f, counts[split], split)
			}
		}
	}
}

func TestSplitOfDegenerateFractions(t *testing.T) {
	for _, tc := range []struct {
		f    Fractions
		want string
	}{{Fractions{Train: 1}, "train"}, {Fractions{Val: 1}, "val"}, {Fractions{Test: 1}, "test"}} {
		for i := range 1000 {
			if got := SplitOf(fmt.Sprint(i), "", tc.f); got != tc.want {
				t.Fatalf("%+v: key %d went to %s", tc.f, i, got)
			}
		}
	}
}

// TestSplitOfStable checks that a key's split depends only on (key, seed):
// not on which other keys exist or in which order they are assigned.
func TestSplitOfStable(t *testing.T) {
	f := Fractions{0.8, 0.1, 0.1}
	first := map[string]string{}
	for i := range 10000 {
		k := fmt.Sprintf("k%d", i)
		first[k] = SplitOf(k, "s", f)
	}
	for i := 19999; i >= 0; i-- { // twice as many keys, reverse order
		k := fmt.Sprintf("k%d", i)
		if s, ok := first[k]; ok && SplitOf(k, "s", f) != s {
			t.Fatalf("%s moved", k)
		}
	}
	moved := 0
	for k, s := range first {
		if SplitOf(k, "other seed", f) != s {
			moved++
		}
	}
	// With a new seed, about 1 - (0.8² + 0.1² + 0.1²) = 34% of keys move.
	if moved < 3000 || moved > 3800 {
		t.Errorf("a new seed moved %d of 10000 keys, want about 3400", moved)
	}
}

// TestSplitOfPinned pins the algorithm: changing it would silently move rows
// of every existing dataset between train and test.
func TestSplitOfPinned(t *testing.T) {
	f := Fractions{0.8, 0.1, 0.1}
	got := ""
	for i := range 24 {
		got += SplitOf(fmt.Sprintf("h%016x", i), "pinned", f)[:2]
	}
	const want = "trtrtrtetrtrtrtrtrvavatrtrtrtrtrtrtrtetetrtrtrtr" // checked against an independent Python implementation
	if got != want {
		t.Errorf("splits %s\n   want %s", got, want)
	}
}

func TestFractionsValidate(t *testing.T) {
	for _, tc := range []struct {
		f  Fractions
		ok bool
	}{
		{Fractions{0.8, 0.1, 0.1}, true},
		{Fractions{1, 0, 0}, true},
		{Fractions{0.7, 0.2, 0.1 + 1e-12}, true},
		{Fractions{0.7, 0.2, 0.2}, false},
		{Fractions{0, 0, 0}, false},
		{Fractions{1.1, -0.1, 0}, false},
		{Fractions{math.NaN(), 0.5, 0.5}, false},
	} {
		if err := tc.f.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tc.f, err, tc.ok)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  \t\n ", ""},
		{"Hello World", "hello world"},
		{"  Hello \t\r\n  World  ", "hello world"},
		{"\u00a0Non\u2003breaking\u3000spaces\u0085", "non breaking spaces"},
		{"Cafe\u0301", "caf\u00e9"},  // NFD -> NFC
		{"CAF\u00c9", "caf\u00e9"},   // non-ASCII upper case
		{"ΣΊΣΥΦΟΣ", "σίσυφοσ"},       // per-rune lower case, as strings.ToLower
		{"ﬁ ligature", "ﬁ ligature"}, // NFC keeps compatibility characters
		{"tab\tand\vform\ffeed", "tab and form feed"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
