package datasets

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// Fractions are the shares of rows that go to each split when a source has
// no fixed split. They must each lie in [0,1] and sum to 1 (within 1e-9).
type Fractions struct{ Train, Val, Test float64 }

// fractionTolerance is how far from 1 the sum of Fractions may be.
const fractionTolerance = 1e-9

// Validate checks that f is a proper distribution over the three splits.
func (f Fractions) Validate() error {
	for _, x := range []struct {
		name string
		v    float64
	}{{"train", f.Train}, {"val", f.Val}, {"test", f.Test}} {
		if math.IsNaN(x.v) || x.v < 0 || x.v > 1 {
			return fmt.Errorf("split fractions: %s fraction %v is not in [0,1]", x.name, x.v)
		}
	}
	if sum := f.Train + f.Val + f.Test; math.Abs(sum-1) > fractionTolerance {
		return fmt.Errorf("split fractions: train %v + val %v + test %v = %v, want 1", f.Train, f.Val, f.Test, sum)
	}
	return nil
}

// SplitOf assigns key to "train", "val" or "test".
//
// The choice depends only on key, seed and f: it is a pure function of one
// row, never of the other rows, so adding rows to a dataset never moves an
// existing row to another split, and re-importing gives the same splits.
// The key is hashed as SHA-256(seed || 0x00 || key); the first 8 bytes, read
// big-endian and scaled to u in [0,1), pick train when u < Train, val when
// u < Train+Val, and test otherwise. Changing the seed reshuffles all rows.
//
// Import uses the content hash of the row (Example.ID without an IDField)
// as the key, so identical texts always land in the same split.
//
// f is not validated here; Import validates it once.
func SplitOf(key, seed string, f Fractions) string {
	h := sha256.New()
	h.Write([]byte(seed))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return splitOfHash(h.Sum(sum[:0]), f)
}

// splitOfHash maps the first 8 bytes of a hash to a split, as SplitOf.
func splitOfHash(h []byte, f Fractions) string {
	u := float64(binary.BigEndian.Uint64(h)>>11) / (1 << 53) // uniform in [0,1)
	switch {
	case u < f.Train:
		return SplitTrain
	case u < f.Train+f.Val:
		return SplitVal
	case f.Test == 0 && f.Val > 0:
		// Only reachable through rounding when Train+Val is a hair under 1.
		return SplitVal
	case f.Test == 0 && f.Val == 0:
		return SplitTrain
	default:
		return SplitTest
	}
}
