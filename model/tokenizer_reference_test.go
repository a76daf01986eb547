package model

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// tokTestCase is one line of the reference encodings.
type tokTestCase struct {
	Tokenizer string `json:"tokenizer"`
	Text      string `json:"text"`
	IDs       []int  `json:"ids"`
	Roundtrip *bool  `json:"roundtrip"`
}

func tokTestReadCases(t *testing.T, path string) []tokTestCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []tokTestCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var c tokTestCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// tokTestCheck encodes every case and fails on each id mismatch, showing
// where the ids part. Decode must give the text back: exactly when the case
// says it round-trips, and always in NFC form when nfc is set (Qwen3's
// normaliser), else exactly.
func tokTestCheck(t *testing.T, tk *Tokenizer, name string, cases []tokTestCase, nfc bool) {
	t.Helper()
	bad := 0
	for i, c := range cases {
		got := tk.Encode(c.Text)
		if !slices.Equal(got, c.IDs) {
			bad++
			if bad <= 5 {
				k := 0
				for k < len(got) && k < len(c.IDs) && got[k] == c.IDs[k] {
					k++
				}
				t.Errorf("%s case %d %q:\n got %v\nwant %v\n(first difference at token %d: got %q, want %q)",
					name, i, c.Text, got, c.IDs, k, tokTestPiece(tk, got, k), tokTestPiece(tk, c.IDs, k))
			}
			continue
		}
		// Decoding gives the normalised text back, and the text itself
		// where the reference says it round-trips.
		want := c.Text
		if nfc {
			want = norm.NFC.String(want)
		}
		dec := tk.Decode(got)
		if dec != want || (c.Roundtrip != nil && *c.Roundtrip && dec != c.Text) {
			t.Errorf("%s case %d: Decode(Encode(%q)) = %q", name, i, c.Text, dec)
		}
	}
	t.Logf("%s: %d/%d texts encode exactly", name, len(cases)-bad, len(cases))
	if bad > 0 {
		t.Errorf("%s: %d of %d texts differ", name, bad, len(cases))
	}
}

func tokTestPiece(tk *Tokenizer, ids []int, k int) string {
	if k >= len(ids) {
		return "<end>"
	}
	return tk.TokenText(ids[k])
}

// TestTokenizerReferenceEncodings checks the 173 texts per tokenizer of
// shared/tokenizers/reference-encodings.jsonl, id for id.
func TestTokenizerReferenceEncodings(t *testing.T) {
	shared := tokTestShared()
	if shared == "" {
		t.Skip("no shared/tokenizers folder above the package: the reference encodings are only there")
	}
	all := tokTestReadCases(t, filepath.Join(shared, "reference-encodings.jsonl"))
	for _, name := range []string{"qwen3", "llama3"} {
		t.Run(name, func(t *testing.T) {
			tk := tokTestTokenizer(t, name)
			var cases []tokTestCase
			for _, c := range all {
				if c.Tokenizer == name {
					cases = append(cases, c)
				}
			}
			if len(cases) != 173 {
				t.Fatalf("want 173 reference texts for %s, found %d", name, len(cases))
			}
			tokTestCheck(t, tk, name, cases, name == "qwen3")
		})
	}
}

// TestTokenizerExtraEncodings checks more texts of the same kind (see
// testdata/tokenizer/gen-extra.js), every one of which must round-trip.
func TestTokenizerExtraEncodings(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3"} {
		t.Run(name, func(t *testing.T) {
			cases := tokTestReadCases(t, filepath.Join("testdata", "tokenizer", "extra-encodings-"+name+".jsonl"))
			if len(cases) < 300 {
				t.Fatalf("want 300+ extra texts for %s, found %d", name, len(cases))
			}
			tk := tokTestTokenizer(t, name)
			tokTestCheck(t, tk, name, cases, name == "qwen3")
		})
	}
}
