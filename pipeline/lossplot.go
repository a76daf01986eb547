package pipeline

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distillery/distillery/distill"
)

// writeLossPlot draws metrics.jsonl's train and val loss into loss.png.
func writeLossPlot(dir string) error {
	f, err := os.Open(filepath.Join(dir, distill.MetricsFile))
	if err != nil {
		return err
	}
	defer f.Close()
	train := distill.Series{Name: "train loss"}
	val := distill.Series{Name: "val loss"}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Step    float64  `json:"step"`
			Loss    *float64 `json:"loss"`
			ValLoss *float64 `json:"val_loss"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec.Loss != nil {
			train.X, train.Y = append(train.X, rec.Step), append(train.Y, *rec.Loss)
		}
		if rec.ValLoss != nil {
			val.X, val.Y = append(val.X, rec.Step), append(val.Y, *rec.ValLoss)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", distill.MetricsFile, err)
	}
	return distill.WriteLossPlot(filepath.Join(dir, LossPlot), []distill.Series{train, val}, "loss by optimizer step")
}
