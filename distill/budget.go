package distill

import (
	"fmt"
	"sync"
)

// Price is US dollars per million tokens.
type Price struct {
	InputPerMTok, OutputPerMTok float64
}

// Cost prices a request's tokens.
func (p Price) Cost(in, out int) float64 {
	return (float64(in)*p.InputPerMTok + float64(out)*p.OutputPerMTok) / 1e6
}

// Budget is a hard spending cap. A request first reserves its worst-case
// cost; the reservation is replaced by the real cost when the answer comes.
// Spent plus reserved never exceeds the limit, so in-flight calls cannot
// push the spend over it.
type Budget struct {
	mu       sync.Mutex
	limit    float64 // 0: no cap
	spent    float64
	reserved float64
}

// NewBudget caps spending at limit US dollars (0: no cap).
func NewBudget(limit float64) *Budget { return &Budget{limit: limit} }

// ErrBudget reports that the next request could exceed the budget.
var ErrBudget = fmt.Errorf("budget exhausted")

// Reserve sets aside worst-case cost, or fails with ErrBudget.
func (b *Budget) Reserve(worst float64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit > 0 && b.spent+b.reserved+worst > b.limit+1e-12 {
		return ErrBudget
	}
	b.reserved += worst
	return nil
}

// Settle replaces a reservation with what was actually charged (0 when the
// request failed without being billed).
func (b *Budget) Settle(reserved, actual float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserved -= reserved
	b.spent += actual
}

// Spent and Limit report the budget's state.
func (b *Budget) Spent() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spent
}

func (b *Budget) Limit() float64 { return b.limit }
