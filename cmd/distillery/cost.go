package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/distillery/distillery/gateway"
)

func costCommand() *cli.Command {
	return &cli.Command{
		Name:      "cost",
		Usage:     "read the gateway's request records and print the savings against all-premium, with a self-hosting break-even",
		ArgsUsage: "RECORDS_DIR",
		Description: `Reads records-*.parquet written by the gateway (accounting.dir). The all-premium cost prices every
request's tokens at the premium tier's price (from --config or --premium-in/--premium-out); tokens
counted by the student's tokenizer stand in for the premium model's. The break-even compares the
GPU's cost per day with what the requests the student (and the cache) kept from the upstream tiers
save, and the GPU's capacity at --student-tokens-per-sec.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "gateway.yaml, for the premium tier's prices"},
			&cli.Float64Flag{Name: "premium-in", Usage: "premium US dollars per million input tokens (overrides --config)"},
			&cli.Float64Flag{Name: "premium-out", Usage: "premium US dollars per million output tokens (overrides --config)"},
			&cli.Float64Flag{Name: "gpu-usd-per-hour", Usage: "what one GPU serving the student costs per hour (0: no break-even)"},
			&cli.Float64Flag{Name: "student-tokens-per-sec", Usage: "student throughput on that GPU (routes.json latency.tokens_per_s)"},
			jsonFlag,
		},
		Action: costAction,
	}
}

// CostReport is what `distillery cost` prints.
type CostReport struct {
	Requests           int                `json:"requests"`
	From               time.Time          `json:"from,omitzero"`
	To                 time.Time          `json:"to,omitzero"`
	ByTier             map[string]tierSum `json:"by_tier"`
	Escalated          int                `json:"escalated"`
	CacheHits          int                `json:"cache_hits"`
	ActualUSD          float64            `json:"actual_usd"`
	UpstreamUSD        float64            `json:"upstream_usd"`
	AllPremiumUSD      float64            `json:"all_premium_usd"`
	SavingsUSD         float64            `json:"savings_usd"`
	SavingsPct         float64            `json:"savings_pct"`
	PerDayRequests     float64            `json:"requests_per_day,omitempty"`
	GPUUSDPerDay       float64            `json:"gpu_usd_per_day,omitempty"`
	SavedPerRequest    float64            `json:"saved_usd_per_request,omitempty"`
	BreakEvenPerDay    float64            `json:"break_even_requests_per_day,omitempty"`
	GPUCapacityDay     float64            `json:"gpu_capacity_requests_per_day,omitempty"`
	SelfHostingPaysOff *bool              `json:"self_hosting_pays_off,omitempty"`
}

type tierSum struct {
	Requests         int     `json:"requests"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CostUSD          float64 `json:"cost_usd"`
}

func costAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("cost: give the records folder (accounting.dir)")
	}
	in, out := c.Float64("premium-in"), c.Float64("premium-out")
	if p := c.String("config"); p != "" {
		cfg, err := gateway.LoadConfig(p)
		if err != nil {
			return usageError("%v", err)
		}
		if cfg.Tiers.Premium != nil {
			if !c.IsSet("premium-in") {
				in = cfg.Tiers.Premium.Price.InputPerMTok
			}
			if !c.IsSet("premium-out") {
				out = cfg.Tiers.Premium.Price.OutputPerMTok
			}
		}
	}
	if in == 0 && out == 0 {
		return usageError("cost: no premium price: give --config with tiers.premium.price, or --premium-in and --premium-out")
	}
	recs, err := gateway.ReadRecords(c.Args().First())
	if err != nil {
		return err
	}
	rep := computeCost(recs, in, out, c.Float64("gpu-usd-per-hour"), c.Float64("student-tokens-per-sec"))
	if c.Bool("json") {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%d requests", rep.Requests)
	if !rep.From.IsZero() {
		fmt.Fprintf(w, " from %s to %s", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "; %d escalated, %d cache hits\n", rep.Escalated, rep.CacheHits)
	tiers := make([]string, 0, len(rep.ByTier))
	for t := range rep.ByTier {
		tiers = append(tiers, t)
	}
	sort.Strings(tiers)
	fmt.Fprintf(w, "%-8s %9s %14s %14s %12s\n", "tier", "requests", "prompt tok", "completion tok", "cost USD")
	for _, t := range tiers {
		s := rep.ByTier[t]
		fmt.Fprintf(w, "%-8s %9d %14d %14d %12.4f\n", t, s.Requests, s.PromptTokens, s.CompletionTokens, s.CostUSD)
	}
	fmt.Fprintf(w, "actual cost      $%.4f (upstream tiers $%.4f)\n", rep.ActualUSD, rep.UpstreamUSD)
	fmt.Fprintf(w, "all-premium cost $%.4f\n", rep.AllPremiumUSD)
	fmt.Fprintf(w, "savings          $%.4f (%.1f%%)\n", rep.SavingsUSD, rep.SavingsPct)
	if rep.GPUUSDPerDay > 0 {
		fmt.Fprintf(w, "self-hosting: the GPU costs $%.2f a day; each request kept from the upstream tiers saves $%.6f on average\n",
			rep.GPUUSDPerDay, rep.SavedPerRequest)
		if rep.BreakEvenPerDay > 0 {
			fmt.Fprintf(w, "break-even at %.0f requests a day", rep.BreakEvenPerDay)
			if rep.PerDayRequests > 0 {
				fmt.Fprintf(w, " (the records show %.0f a day)", rep.PerDayRequests)
			}
			fmt.Fprintln(w)
		}
		if rep.GPUCapacityDay > 0 {
			fmt.Fprintf(w, "one GPU serves up to %.0f requests a day at the measured throughput\n", rep.GPUCapacityDay)
		}
		if rep.SelfHostingPaysOff != nil {
			fmt.Fprintf(w, "self-hosting pays off at the recorded traffic: %v\n", *rep.SelfHostingPaysOff)
		}
	}
	return nil
}

// computeCost prices the records; in and out are the premium prices per
// million tokens.
func computeCost(recs []gateway.Record, in, out, gpuPerHour, tokPerSec float64) CostReport {
	rep := CostReport{Requests: len(recs), ByTier: map[string]tierSum{}}
	var keptSaved, studentTokens float64
	var studentAnswers int
	for _, r := range recs {
		if r.Status != 200 {
			continue
		}
		if rep.From.IsZero() || r.Time.Before(rep.From) {
			rep.From = r.Time
		}
		if r.Time.After(rep.To) {
			rep.To = r.Time
		}
		s := rep.ByTier[r.Tier]
		s.Requests++
		s.PromptTokens += r.PromptTokens
		s.CompletionTokens += r.CompletionTokens
		s.CostUSD += r.CostUSD
		rep.ByTier[r.Tier] = s
		if r.Escalated {
			rep.Escalated++
		}
		if r.Tier == gateway.TierCache {
			rep.CacheHits++
		}
		premium := (float64(r.PromptTokens)*in + float64(r.CompletionTokens)*out) / 1e6
		rep.AllPremiumUSD += premium
		rep.ActualUSD += r.CostUSD
		if r.Tier == gateway.TierMid || r.Tier == gateway.TierPremium {
			rep.UpstreamUSD += r.CostUSD // an escalated record's student share is in it too
		}
		if r.Tier == gateway.TierStudent || r.Tier == gateway.TierCache {
			keptSaved += premium
		}
		if r.Tier == gateway.TierStudent {
			studentAnswers++
			studentTokens += float64(r.PromptTokens + r.CompletionTokens)
		}
	}
	rep.SavingsUSD = rep.AllPremiumUSD - rep.ActualUSD
	if rep.AllPremiumUSD > 0 {
		rep.SavingsPct = 100 * rep.SavingsUSD / rep.AllPremiumUSD
	}
	if days := rep.To.Sub(rep.From).Hours() / 24; days > 0 {
		rep.PerDayRequests = float64(rep.Requests) / math.Max(days, 1.0/24)
	}
	if gpuPerHour > 0 {
		rep.GPUUSDPerDay = 24 * gpuPerHour
		if len(recs) > 0 {
			// What the student and the cache save per request of the
			// traffic, before paying for the GPU.
			rep.SavedPerRequest = keptSaved / float64(len(recs))
		}
		if rep.SavedPerRequest > 0 {
			rep.BreakEvenPerDay = rep.GPUUSDPerDay / rep.SavedPerRequest
		}
		if tokPerSec > 0 && studentAnswers > 0 {
			perReq := studentTokens / float64(studentAnswers)
			share := float64(studentAnswers) / float64(len(recs))
			rep.GPUCapacityDay = tokPerSec * 86400 / perReq / share
		}
		if rep.PerDayRequests > 0 && rep.BreakEvenPerDay > 0 {
			pays := rep.PerDayRequests >= rep.BreakEvenPerDay
			rep.SelfHostingPaysOff = &pays
		}
	}
	return rep
}
