package gateway

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// runAssembler feeds tokens through an assembler and returns the released
// text, the released tokens and whether a stop string ended it. It checks
// that every token is released at most once and in order.
func runAssembler(t *testing.T, toks []string, stops []string) (string, []string, bool) {
	t.Helper()
	a := newAssembler(stops)
	var text strings.Builder
	var released []string
	take := func(seg segment) {
		text.WriteString(seg.text)
		for _, tok := range seg.toks {
			released = append(released, tok.Text)
		}
	}
	stopped := false
	for _, tok := range toks {
		seg, st := a.add(Token{Text: tok})
		take(seg)
		if st {
			stopped = true
			break
		}
	}
	if !stopped {
		take(a.finish())
	}
	return text.String(), released, stopped
}

func TestAssembler(t *testing.T) {
	tests := []struct {
		name     string
		toks     []string
		stops    []string
		text     string
		released []string
		stopped  bool
	}{
		{"no stops", []string{"a", "b"}, nil, "ab", []string{"a", "b"}, false},
		{"empty stop ignored", []string{"a", "b"}, []string{""}, "ab", []string{"a", "b"}, false},
		{"whole token", []string{"Hi", ".", "\n", "x"}, []string{"\n"}, "Hi.", []string{"Hi", "."}, true},
		{"inside a token", []string{"Hi", ".\nmore"}, []string{"\n"}, "Hi.", []string{"Hi", ".\nmore"}, true},
		{"across tokens", []string{"one", " E", "N", "D", " two"}, []string{"END"}, "one ", []string{"one", " E"}, true},
		{"across three tokens", []string{"x", "<", "/", "s>", "y"}, []string{"</s>"}, "x", []string{"x"}, true},
		{"at the start", []string{"ST", "OP", "x"}, []string{"STOP"}, "", nil, true},
		{"prefix that does not complete", []string{"a", "EN", "x", "END"}, []string{"END"}, "aENx", []string{"a", "EN", "x"}, true},
		{"earliest completed wins", []string{"a", "bc", "d"}, []string{"abcd", "bc"}, "a", []string{"a"}, true},
		{"two stops, first in text", []string{"xAyB"}, []string{"B", "A"}, "x", []string{"xAyB"}, true},
		{"held prefix released at end", []string{"a", "EN"}, []string{"END"}, "aEN", []string{"a", "EN"}, false},
		{"overlapping prefix", []string{"aa", "ab"}, []string{"aab"}, "a", []string{"aa"}, true},
		{"utf8 split across tokens", []string{"\xc3", "\xa9", "!"}, nil, "é!", []string{"\xc3", "\xa9", "!"}, false},
		{"stop after split char", []string{"\xc3", "\xa9", "#"}, []string{"#"}, "é", []string{"\xc3", "\xa9"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, released, stopped := runAssembler(t, tt.toks, tt.stops)
			if text != tt.text || stopped != tt.stopped || strings.Join(released, "|") != strings.Join(tt.released, "|") {
				t.Errorf("got %q %q stopped=%v, want %q %q stopped=%v", text, released, stopped, tt.text, tt.released, tt.stopped)
			}
		})
	}
}

// TestAssemblerHoldsBack checks what a stream would see token by token.
func TestAssemblerHoldsBack(t *testing.T) {
	a := newAssembler([]string{"END"})
	steps := []struct{ tok, out string }{
		{"one", "one"},
		{" E", " "},   // "E" may start END
		{"N", ""},     // "EN" still may
		{"x", "ENx"},  // it did not
		{"\xe2", ""},  // the first byte of "€"
		{"\x82", ""},  // the second
		{"\xac", "€"}, // complete
	}
	for _, s := range steps {
		seg, stopped := a.add(Token{Text: s.tok})
		if stopped || seg.text != s.out {
			t.Fatalf("after %q: released %q stopped=%v, want %q", s.tok, seg.text, stopped, s.out)
		}
	}
}

// TestAssemblerRandom compares the assembler with a reference on random
// token streams: the text is cut at the first stop string to complete (the
// earliest-starting one among those complete at that token), everything
// released is a prefix of the final text, and a token is released iff it
// starts before the cut.
func TestAssemblerRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "ab", "ba", "aab", "c", ""}
	for iter := range 3000 {
		var toks []string
		for range rng.IntN(12) {
			toks = append(toks, alphabet[rng.IntN(len(alphabet))])
		}
		var stops []string
		for range rng.IntN(3) {
			var s strings.Builder
			for range 1 + rng.IntN(3) {
				s.WriteByte("abc"[rng.IntN(3)])
			}
			stops = append(stops, s.String())
		}

		// Reference.
		full, cut, wantStopped := "", -1, false
		var starts []int
		for _, tok := range toks {
			starts = append(starts, len(full))
			full += tok
			best := -1
			for _, s := range stops {
				if i := strings.Index(full, s); i >= 0 && (best < 0 || i < best) {
					best = i
				}
			}
			if best >= 0 {
				cut, wantStopped = best, true
				break
			}
		}
		if !wantStopped {
			cut = len(full)
		}
		var wantReleased []string
		for i, st := range starts {
			if st < cut || (!wantStopped) {
				wantReleased = append(wantReleased, toks[i])
			}
		}

		a := newAssembler(stops)
		var got strings.Builder
		var released []string
		stopped := false
		for _, tok := range toks {
			seg, st := a.add(Token{Text: tok})
			got.WriteString(seg.text)
			for _, tk := range seg.toks {
				released = append(released, tk.Text)
			}
			if !strings.HasPrefix(full[:cut], got.String()) {
				t.Fatalf("iter %d: released %q, not a prefix of %q (toks %q stops %q)", iter, got.String(), full[:cut], toks, stops)
			}
			if st {
				stopped = true
				break
			}
		}
		if !stopped {
			seg := a.finish()
			got.WriteString(seg.text)
			for _, tk := range seg.toks {
				released = append(released, tk.Text)
			}
		}
		if got.String() != full[:cut] || stopped != wantStopped || strings.Join(released, "|") != strings.Join(wantReleased, "|") {
			t.Fatalf("iter %d: toks %q stops %q: got %q %q %v, want %q %q %v",
				iter, toks, stops, got.String(), released, stopped, full[:cut], wantReleased, wantStopped)
		}
	}
}

func TestCharOffset(t *testing.T) {
	a := newAssembler(nil)
	for _, tok := range []string{"é", "\xe2", "\x82\xac", "x"} {
		a.add(Token{Text: tok})
	}
	a.finish()
	// byte offsets 0, 2, 3, 5 -> characters 0, 1, 2 (inside "€": counted as a count from the start would), 2
	for _, c := range []struct{ b, want int }{{0, 0}, {2, 1}, {3, 2}, {5, 2}, {6, 3}} {
		if got := a.charOffset(c.b); got != c.want {
			t.Errorf("charOffset(%d) = %d, want %d", c.b, got, c.want)
		}
	}
}
