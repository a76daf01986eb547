package distill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distillery/distillery/store"
)

// BatchDiscount is the Batch API's price relative to online requests.
const BatchDiscount = 0.5

// batchStateName records a submitted batch in HarvestOptions.Dir, so that a
// killed harvest waits for the batch it paid for instead of submitting a
// second one.
const batchStateName = "batch.json"

type batchState struct {
	BatchID string   `json:"batch_id"`
	Keys    []string `json:"keys"` // custom ids: the prompts' request keys
}

// askBatch sends the prompts through the OpenAI Batch API: it reserves the
// discounted worst case of each prompt, submits those that fit the budget
// in one batch (recorded durably before waiting), and journals each result.
func (h *harvester) askBatch(ctx context.Context, j *Journal, todo []*prompt) error {
	if len(todo) == 0 {
		return nil
	}
	byKey := map[string]*prompt{}
	for _, p := range todo {
		byKey[p.key] = p
	}
	statePath := filepath.Join(h.o.Dir, batchStateName)
	var st batchState
	if data, err := os.ReadFile(statePath); err == nil && json.Unmarshal(data, &st) == nil && st.BatchID != "" {
		h.o.Log.Info("waiting for the batch submitted earlier", "batch", st.BatchID)
	} else {
		price := Price{InputPerMTok: h.o.Price.InputPerMTok * BatchDiscount, OutputPerMTok: h.o.Price.OutputPerMTok * BatchDiscount}
		budget := NewBudget(h.o.BudgetUSD)
		var items []BatchItem
		for _, p := range todo {
			if budget.Reserve(price.Cost(maxInputTokens(p.req), p.req.MaxTokens)) != nil {
				h.sum.StoppedBy = "budget"
				h.sum.Unharvested = len(todo) - len(items)
				break
			}
			items = append(items, BatchItem{CustomID: p.key, Request: p.req})
			st.Keys = append(st.Keys, p.key)
		}
		if len(items) == 0 {
			return nil
		}
		id, err := h.o.Batch.Submit(ctx, items)
		if err != nil {
			return fmt.Errorf("harvest batch: %w", err)
		}
		st.BatchID = id
		data, _ := json.Marshal(st)
		if err := store.WriteFileAtomic(statePath, data); err != nil {
			return fmt.Errorf("harvest batch %s: %w", id, err)
		}
		h.o.Log.Info("batch submitted", "batch", id, "requests", len(items))
	}
	h.sum.Asked = len(st.Keys)
	err := h.o.Batch.Wait(ctx, st.BatchID, func(done, failed, total int) {
		h.o.Log.Info("batch progress", "batch", st.BatchID, "completed", done, "failed", failed, "total", total)
	}, func(r BatchResult) error {
		p := byKey[r.CustomID]
		if p == nil {
			return nil // answered earlier and already journaled
		}
		if r.Err != nil {
			h.mu.Lock()
			h.sum.Failed++
			var te *Error
			if errors.As(r.Err, &te) {
				if h.sum.FailuresByKind == nil {
					h.sum.FailuresByKind = map[string]int{}
				}
				h.sum.FailuresByKind[string(te.Kind)]++
			}
			h.mu.Unlock()
			return nil
		}
		cost := h.o.Price.Cost(r.Response.InputTokens, r.Response.OutputTokens) * BatchDiscount
		rec := Record{Key: p.key, Response: r.Response, CostUSD: cost}
		if err := j.Append(rec); err != nil {
			return err
		}
		h.mu.Lock()
		h.sum.Requests++
		h.mu.Unlock()
		return h.write(p, rec, true)
	})
	if err != nil {
		return fmt.Errorf("harvest batch %s: %w", st.BatchID, err)
	}
	return nil
}
