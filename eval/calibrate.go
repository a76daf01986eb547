package eval

import (
	"fmt"
	"math"
	"sort"

	"github.com/distillery/distillery/routes"
)

// CalibrateThreshold picks the gateway's confidence threshold: the student
// keeps a request when its confidence is >= threshold and escalates it to
// the teacher otherwise. It returns the lowest threshold at which the
// precision of the kept examples (the share of them that are correct) is
// at least targetPrecision, with that precision and the coverage (the
// share of all examples kept).
//
//   - Candidate thresholds are the observed confidences, so examples with
//     equal confidence are always kept or escalated together (ties cannot
//     be split), and the threshold is an observed value, not a midpoint.
//   - The lowest qualifying threshold is taken even where precision is not
//     monotonic in the threshold: it keeps the most examples.
//   - When no threshold qualifies, or there are no examples, the threshold
//     is routes.Escalate (1.01: no probability reaches it, every request
//     escalates), with precision 0 and coverage 0.
//   - A NaN confidence is never kept but counts in the coverage denominator.
//
// confidences and correct are parallel; it panics when their lengths
// differ.
func CalibrateThreshold(confidences []float64, correct []bool, targetPrecision float64) (threshold, precision, coverage float64) {
	if len(confidences) != len(correct) {
		panic(fmt.Sprintf("eval.CalibrateThreshold: %d confidences, %d outcomes", len(confidences), len(correct)))
	}
	idx := make([]int, 0, len(confidences))
	for i, c := range confidences {
		if !math.IsNaN(c) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return confidences[idx[a]] > confidences[idx[b]] })
	threshold = routes.Escalate
	kept, hits := 0, 0
	for k := 0; k < len(idx); {
		// Take the whole group of equal confidences.
		c := confidences[idx[k]]
		for ; k < len(idx) && confidences[idx[k]] == c; k++ {
			kept++
			if correct[idx[k]] {
				hits++
			}
		}
		if p := float64(hits) / float64(kept); p >= targetPrecision {
			threshold, precision, coverage = c, p, float64(kept)/float64(len(confidences))
		}
	}
	return threshold, precision, coverage
}
