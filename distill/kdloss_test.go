//go:build !race

// GoMLX graphs run too slowly under the race detector (and compute trips checkptr);
// make test runs these without -race.

package distill

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/distillery/distillery/model"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

var (
	kdBackendOnce sync.Once
	kdBackend     compute.Backend
	kdBackendErr  error
)

func kdTestBackend(tb testing.TB) compute.Backend {
	kdBackendOnce.Do(func() { kdBackend, kdBackendErr = model.NewBackend("") })
	if kdBackendErr != nil {
		tb.Fatal(kdBackendErr)
	}
	return kdBackend
}

// kdCase is one batch of loss inputs, flat row-major.
type kdCase struct {
	B, S, V, K     int
	logits         []float32 // [B,S,V]
	targets        []int32   // [B,S]
	ceMask, kdMask []float32 // [B,S]
	ids            []int32   // [B,S,K]
	logp, valid    []float32 // [B,S,K]
}

func (c *kdCase) args() []any {
	return []any{
		tensors.FromFlatDataAndDimensions(c.logits, c.B, c.S, c.V),
		tensors.FromFlatDataAndDimensions(c.targets, c.B, c.S),
		tensors.FromFlatDataAndDimensions(c.ceMask, c.B, c.S),
		tensors.FromFlatDataAndDimensions(c.ids, c.B, c.S, c.K),
		tensors.FromFlatDataAndDimensions(c.logp, c.B, c.S, c.K),
		tensors.FromFlatDataAndDimensions(c.valid, c.B, c.S, c.K),
		tensors.FromFlatDataAndDimensions(c.kdMask, c.B, c.S),
	}
}

// kdResult is what the graph computed for a case.
type kdResult struct {
	total, kd, ce, kdAlone, ceAlone float64
	grad                            []float32 // d total / d logits
}

func runKD(t testing.TB, spec KDSpec, c *kdCase) kdResult {
	t.Helper()
	exec, err := graph.NewExec(kdTestBackend(t), func(in []*graph.Node) []*graph.Node {
		logits, targets, ceMask, ids, logp, valid, kdMask := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
		total, kd, ce := DistillLoss(spec, logits, targets, ceMask, ids, logp, valid, kdMask)
		grad := graph.Gradient(total, logits)[0]
		return []*graph.Node{total, kd, ce, KDLoss(spec, logits, ids, logp, valid, kdMask), CrossEntropy(logits, targets, ceMask), grad}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	out, err := exec.Exec(c.args()...)
	if err != nil {
		t.Fatal(err)
	}
	s := func(i int) float64 { return float64(tensors.MustCopyFlatData[float32](out[i])[0]) }
	return kdResult{s(0), s(1), s(2), s(3), s(4), tensors.MustCopyFlatData[float32](out[5])}
}

// --- Reference: plain float64, straight from the definitions. ---

func refSoftmax(x []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	var sum float64
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = math.Exp(v - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func refNormalize(p []float64) []float64 {
	var sum float64
	for _, v := range p {
		sum += v
	}
	out := make([]float64, len(p))
	for i, v := range p {
		out[i] = v / sum
	}
	return out
}

func refKL(p, q []float64) float64 {
	var d float64
	for i := range p {
		if p[i] > 0 {
			d += p[i] * math.Log(p[i]/q[i])
		}
	}
	return d
}

// refBuckets returns the teacher's and the student's distributions over
// the unique valid ids (in order of first appearance) plus the tail, or
// false when the position has no valid entry.
func refBuckets(c *kdCase, logits []float64, pos int, temp float64) (pt, ps []float64, ok bool) {
	var order []int32
	mass := map[int32]float64{}
	for k := range c.K {
		i := pos*c.K + k
		if c.valid[i] == 0 {
			continue
		}
		id := c.ids[i]
		if _, seen := mass[id]; !seen {
			order = append(order, id)
		}
		mass[id] += math.Exp(float64(c.logp[i]))
	}
	if len(order) == 0 {
		return nil, nil, false
	}
	z := make([]float64, c.V)
	for j := range z {
		z[j] = logits[pos*c.V+j] / temp
	}
	p := refSoftmax(z)
	temper := func(m float64) float64 { // ProbFloor: below it is noise
		if m < ProbFloor {
			return 0
		}
		return math.Pow(m, 1/temp)
	}
	var listedT, tailS float64
	for _, id := range order {
		pt = append(pt, temper(mass[id]))
		ps = append(ps, p[id])
		listedT += mass[id]
	}
	for j := range p {
		if _, listed := mass[int32(j)]; !listed {
			tailS += p[j]
		}
	}
	pt = refNormalize(append(pt, temper(1-listedT)))
	for i := range pt {
		pt[i] = math.Max(pt[i], ProbFloor)
	}
	ps = append(ps, tailS+ProbFloor)
	return refNormalize(pt), refNormalize(ps), true
}

func refLosses(spec KDSpec, c *kdCase, logits []float64) (total, kd, ce float64) {
	var ceSum, ceW float64
	for pos := range c.B * c.S {
		if w := float64(c.ceMask[pos]); w > 0 {
			row := make([]float64, c.V)
			copy(row, logits[pos*c.V:(pos+1)*c.V])
			ceSum -= w * math.Log(refSoftmax(row)[c.targets[pos]])
			ceW += w
		}
	}
	if ceW > 0 {
		ce = ceSum / ceW
	}
	if spec.Kind == KindCE {
		return ce, 0, ce
	}
	var kdSum, kdW float64
	temp := spec.Temperature
	for pos := range c.B * c.S {
		w := float64(c.kdMask[pos])
		if w <= 0 {
			continue
		}
		pt, ps, ok := refBuckets(c, logits, pos, temp)
		if !ok {
			continue
		}
		var d float64
		switch b := spec.Beta; {
		case spec.Kind == KindForwardKL || spec.Kind == KindJSD && b == 0:
			d = refKL(pt, ps)
		case spec.Kind == KindReverseKL || spec.Kind == KindJSD && b == 1:
			d = refKL(ps, pt)
		default:
			m := make([]float64, len(pt))
			for i := range m {
				m[i] = b*pt[i] + (1-b)*ps[i]
			}
			d = b*refKL(pt, m) + (1-b)*refKL(ps, m)
		}
		kdSum += w * d * temp * temp
		kdW += w
	}
	if kdW > 0 {
		kd = kdSum / kdW
	}
	return spec.Alpha*kd + (1-spec.Alpha)*ce, kd, ce
}

func (c *kdCase) logits64() []float64 {
	out := make([]float64, len(c.logits))
	for i, v := range c.logits {
		out[i] = float64(v)
	}
	return out
}

// --- Cases. ---

func newKDCase(b, s, v, k int) *kdCase {
	return &kdCase{B: b, S: s, V: v, K: k,
		logits: make([]float32, b*s*v), targets: make([]int32, b*s),
		ceMask: make([]float32, b*s), kdMask: make([]float32, b*s),
		ids: make([]int32, b*s*k), logp: make([]float32, b*s*k), valid: make([]float32, b*s*k)}
}

// setTop fills position pos's top-k with ids and probabilities; the rest
// of its K entries are padding.
func (c *kdCase) setTop(pos int, ids []int32, probs []float64) {
	for k := range c.K {
		i := pos*c.K + k
		if k < len(ids) {
			c.ids[i], c.logp[i], c.valid[i] = ids[k], float32(math.Log(probs[k])), 1
		} else { // padding: repeated, out-of-range or zero ids, junk logprobs
			c.ids[i] = [...]int32{0, -1, int32(c.V + 7), ids[0]}[k%4]
			c.logp[i] = [...]float32{0, float32(math.NaN()), float32(math.Inf(-1)), 3}[k%4]
		}
	}
}

// randomKDCase: random logits; per position a random number of distinct
// valid ids (one position without any, one with a duplicated id), teacher
// probabilities leaving a random tail, some of it ≈ 0; random masks with
// some positions off.
func randomKDCase(seed uint64, b, s, v, k int) *kdCase {
	rng := rand.New(rand.NewPCG(seed, 7))
	c := newKDCase(b, s, v, k)
	for i := range c.logits {
		c.logits[i] = float32(rng.NormFloat64() * 2)
	}
	for pos := range b * s {
		c.targets[pos] = int32(rng.IntN(v))
		c.ceMask[pos], c.kdMask[pos] = 1, 1
		if rng.IntN(5) == 0 {
			c.ceMask[pos], c.targets[pos] = 0, -100
		}
		if rng.IntN(5) == 0 {
			c.kdMask[pos] = 0
		}
		n := 1 + rng.IntN(k)
		switch pos {
		case 1:
			n = 0 // no top-k (e.g. a hard-label answer)
		case 2:
			n = k // full list
		case 3:
			n, c.kdMask[pos] = max(n, 2), 1 // gets a duplicated id below
		}
		ids := make([]int32, 0, n)
		for _, j := range rng.Perm(v)[:n] {
			ids = append(ids, int32(j))
		}
		tail := [...]float64{0.3, 0.05, 1e-12, 0}[pos%4]
		probs := make([]float64, n)
		var sum float64
		for i := range probs {
			probs[i] = rng.ExpFloat64()
			sum += probs[i]
		}
		for i := range probs {
			probs[i] *= (1 - tail) / sum
		}
		if pos == 3 && n >= 2 { // a valid duplicate: the teacher's two tokens map to one student id
			ids[1] = ids[0]
		}
		if n == 0 {
			for kk := range k {
				c.ids[pos*k+kk], c.logp[pos*k+kk], c.valid[pos*k+kk] = int32(kk), -1, 0
			}
			continue
		}
		c.setTop(pos, ids, probs)
	}
	return c
}

// classificationCase: 3 labels whose first student tokens are 4, 7, 2; the
// answer position is 2 of 4; the teacher gives the second label 0 and
// __other__ 0 in one row, some __other__ mass in the other.
func classificationCase() *kdCase {
	c := newKDCase(2, 4, 9, 3)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range c.logits {
		c.logits[i] = float32(rng.NormFloat64())
	}
	labels := []int32{4, 7, 2}
	for b, dist := range [][]float64{{0.75, 0, 0.25}, {0.2, 0.5, 0.1}} {
		pos := b*4 + 2
		c.setTop(pos, labels, dist)
		c.kdMask[pos], c.ceMask[pos], c.targets[pos] = 1, 1, labels[b]
		for _, other := range []int{0, 1, 3} { // prompt positions: no top-k, masked
			for k := range c.K {
				c.ids[(b*4+other)*c.K+k] = 0
			}
		}
	}
	return c
}

func kdClose(got, want float64) bool {
	return math.Abs(got-want) <= 1e-5*math.Max(1, math.Abs(want))
}

func TestKDLossMatchesReference(t *testing.T) {
	rc := randomKDCase(1, 2, 3, 13, 5)
	zero := randomKDCase(2, 1, 3, 13, 5)
	clear(zero.ceMask)
	clear(zero.kdMask)
	cases := map[string]*kdCase{"random": rc, "classification": classificationCase(), "zero-mask": zero}
	specs := []KDSpec{
		{Kind: KindCE},
		{Kind: KindForwardKL, Temperature: 1, Alpha: 0.5},
		{Kind: KindForwardKL, Temperature: 2, Alpha: 1},
		{Kind: KindForwardKL, Temperature: 0.5, Alpha: 0},
		{Kind: KindReverseKL, Temperature: 1, Alpha: 0.3},
		{Kind: KindReverseKL, Temperature: 3, Alpha: 0.7},
		{Kind: KindJSD, Temperature: 1, Alpha: 0.5, Beta: 0.5},
		{Kind: KindJSD, Temperature: 2, Alpha: 0.9, Beta: 0.1},
		{Kind: KindJSD, Temperature: 1.5, Alpha: 0.2, Beta: 0.9},
		{Kind: KindJSD, Temperature: 2, Alpha: 1, Beta: 0},
		{Kind: KindJSD, Temperature: 2, Alpha: 1, Beta: 1},
	}
	for name, c := range cases {
		for _, spec := range specs {
			if name != "random" && spec.Temperature > 2 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s-T%g-a%g-b%g", name, spec.Kind, spec.Temperature, spec.Alpha, spec.Beta), func(t *testing.T) {
				got := runKD(t, spec, c)
				wantTotal, wantKD, wantCE := refLosses(spec, c, c.logits64())
				for _, v := range []struct {
					what      string
					got, want float64
				}{{"total", got.total, wantTotal}, {"kd", got.kd, wantKD}, {"ce", got.ce, wantCE},
					{"KDLoss", got.kdAlone, wantKD}, {"CrossEntropy", got.ceAlone, wantCE}} {
					if !kdClose(v.got, v.want) {
						t.Errorf("%s = %.8g, reference %.8g", v.what, v.got, v.want)
					}
				}
				if got.kd < -1e-6 {
					t.Errorf("divergence %g < 0", got.kd)
				}
				for i, g := range got.grad {
					if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
						t.Fatalf("gradient[%d] = %v", i, g)
					}
					if name == "zero-mask" && g != 0 {
						t.Fatalf("zero mask: gradient[%d] = %v, want 0", i, g)
					}
				}
				if name == "zero-mask" && (got.total != 0 || got.kd != 0 || got.ce != 0) {
					t.Errorf("zero mask: total, kd, ce = %v, %v, %v; want 0", got.total, got.kd, got.ce)
				}
			})
		}
	}
}

// TestKDLossZeroWhenStudentIsTeacher: with K = V the tail is empty and the
// teacher's top-k is the student's own distribution, so every divergence
// is 0 (and the tail floor of both sides agrees).
func TestKDLossZeroWhenStudentIsTeacher(t *testing.T) {
	c := randomKDCase(5, 1, 2, 6, 6)
	for pos := range c.B * c.S {
		row := make([]float64, c.V)
		for j := range row {
			row[j] = float64(c.logits[pos*c.V+j])
		}
		p := refSoftmax(row)
		ids := make([]int32, c.V)
		for j := range ids {
			ids[j] = int32(c.V - 1 - j) // any order
		}
		probs := make([]float64, c.V)
		for j, id := range ids {
			probs[j] = p[id]
		}
		c.setTop(pos, ids, probs)
		c.kdMask[pos] = 1
	}
	for _, spec := range []KDSpec{
		{Kind: KindForwardKL, Temperature: 1, Alpha: 1},
		{Kind: KindReverseKL, Temperature: 1, Alpha: 1},
		{Kind: KindJSD, Temperature: 1, Alpha: 1, Beta: 0.5},
		{Kind: KindForwardKL, Temperature: 2, Alpha: 1},
	} {
		got := runKD(t, spec, c)
		if math.Abs(got.kd) > 1e-5 {
			t.Errorf("%+v: divergence %g, want 0", spec, got.kd)
		}
	}
}

// TestKDLossGradient compares d total / d logits with central finite
// differences of the float64 reference.
func TestKDLossGradient(t *testing.T) {
	c := randomKDCase(9, 1, 4, 7, 4)
	for _, spec := range []KDSpec{
		{Kind: KindForwardKL, Temperature: 2, Alpha: 0.5},
		{Kind: KindReverseKL, Temperature: 1, Alpha: 0.8},
		{Kind: KindJSD, Temperature: 1.5, Alpha: 0.6, Beta: 0.3},
		{Kind: KindCE},
	} {
		t.Run(spec.Kind, func(t *testing.T) {
			got := runKD(t, spec, c)
			x := c.logits64()
			const h = 1e-4
			for i := range x {
				orig := x[i]
				x[i] = orig + h
				up, _, _ := refLosses(spec, c, x)
				x[i] = orig - h
				down, _, _ := refLosses(spec, c, x)
				x[i] = orig
				want := (up - down) / (2 * h)
				if math.Abs(float64(got.grad[i])-want) > 2e-5+1e-3*math.Abs(want) {
					t.Errorf("d/dlogits[%d] = %.7g, finite differences %.7g", i, got.grad[i], want)
				}
			}
		})
	}
}

func TestKDSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		spec KDSpec
		ok   bool
	}{
		{KDSpec{Kind: KindCE}, true},
		{KDSpec{Kind: KindJSD, Temperature: 2, Alpha: 0.5, Beta: 0.5}, true},
		{KDSpec{}, false},
		{KDSpec{Kind: "kl", Temperature: 1}, false},
		{KDSpec{Kind: KindForwardKL}, false}, // temperature 0
		{KDSpec{Kind: KindForwardKL, Temperature: math.NaN()}, false},
		{KDSpec{Kind: KindForwardKL, Temperature: 1, Alpha: 1.5}, false},
		{KDSpec{Kind: KindJSD, Temperature: 1, Beta: -0.1}, false},
	} {
		if err := tc.spec.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v", tc.spec, err)
		}
	}
	// The graph functions refuse an invalid spec.
	exec, err := graph.NewExec(kdTestBackend(t), func(in []*graph.Node) *graph.Node {
		return KDLoss(KDSpec{Kind: "kl"}, in[0], in[1], in[2], in[3], in[4])
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newKDCase(1, 1, 3, 1)
	a := c.args()
	if _, err := exec.Exec(a[0], a[3], a[4], a[5], a[6]); err == nil {
		t.Error("KDLoss with kind \"kl\" built a graph")
	}
}

// BenchmarkKDLoss: forward and backward of DistillLoss (forward KL, T=2)
// and of CrossEntropy alone, B=16, S=64, V=4096, K=20, run alternately so
// that the reported ratio holds on a shared machine.
func BenchmarkKDLoss(b *testing.B) {
	const bs, seq, v, k = 16, 64, 4096, 20
	rng := rand.New(rand.NewPCG(1, 2))
	c := newKDCase(bs, seq, v, k)
	for i := range c.logits {
		c.logits[i] = float32(rng.NormFloat64())
	}
	for pos := range bs * seq {
		c.targets[pos], c.ceMask[pos], c.kdMask[pos] = int32(rng.IntN(v)), 1, 1
		ids := make([]int32, k)
		probs := make([]float64, k)
		for i, j := range rng.Perm(v)[:k] {
			ids[i], probs[i] = int32(j), 0.9/k
		}
		c.setTop(pos, ids, probs)
	}
	spec := KDSpec{Kind: KindForwardKL, Temperature: 2, Alpha: 0.5}
	step := func(distill bool) func() {
		exec, err := graph.NewExec(kdTestBackend(b), func(in []*graph.Node) []*graph.Node {
			loss := CrossEntropy(in[0], in[1], in[2])
			if distill {
				loss, _, _ = DistillLoss(spec, in[0], in[1], in[2], in[3], in[4], in[5], in[6])
			}
			return []*graph.Node{loss, graph.Gradient(loss, in[0])[0]}
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(exec.Finalize)
		args := c.args()
		return func() {
			out, err := exec.Exec(args...)
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range out {
				o.FinalizeAll()
			}
		}
	}
	kd, ce := step(true), step(false)
	kd() // compile
	ce()
	var kdTime, ceTime time.Duration
	for b.Loop() {
		start := time.Now()
		kd()
		mid := time.Now()
		ce()
		kdTime, ceTime = kdTime+mid.Sub(start), ceTime+time.Since(mid)
	}
	b.ReportMetric(float64(kdTime.Milliseconds())/float64(b.N), "distill-ms/op")
	b.ReportMetric(float64(ceTime.Milliseconds())/float64(b.N), "ce-ms/op")
	b.ReportMetric(kdTime.Seconds()/ceTime.Seconds(), "ratio")
}
