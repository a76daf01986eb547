package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// TrainPoint is one line of the trainer's metrics.jsonl: a training line
// {"step":N,"loss":x,"lr":y}, an evaluation line {"step":N,"val_loss":x,...},
// or both in one. Other keys are ignored.
type TrainPoint struct {
	Step    int      `json:"step"`
	Loss    *float64 `json:"loss,omitempty"`
	LR      *float64 `json:"lr,omitempty"`
	ValLoss *float64 `json:"val_loss,omitempty"`
}

// TrainingSummary summarises metrics.jsonl in report.json.
type TrainingSummary struct {
	Points      int      `json:"points" doc:"Lines read."`
	Steps       int      `json:"steps" doc:"Largest step."`
	FinalLoss   *float64 `json:"final_loss" doc:"Training loss at the last training line; null without one."`
	BestValLoss *float64 `json:"best_val_loss" doc:"Lowest val_loss; null without evaluation lines."`
	BestValStep *int     `json:"best_val_step" doc:"Step of the lowest val_loss."`
}

// ReadTrainLog reads metrics.jsonl. Blank lines are skipped; a line that
// is not a JSON object with an integer step, or whose loss, lr or val_loss
// is not a finite number, is an error naming the line; a last line
// without its newline that does not parse is taken as cut short by a
// crash and skipped. A missing file gives an error wrapping
// fs.ErrNotExist.
func ReadTrainLog(path string) ([]TrainPoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pts []TrainPoint
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		var p TrainPoint
		err := json.Unmarshal(b, &raw)
		if err == nil {
			if _, ok := raw["step"]; !ok {
				err = fmt.Errorf("no step")
			} else {
				err = json.Unmarshal(b, &p)
			}
		}
		if err != nil {
			last := !bytes.HasSuffix(data, []byte("\n")) && !sc.Scan()
			if last {
				break
			}
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		for name, v := range map[string]*float64{"loss": p.Loss, "lr": p.LR, "val_loss": p.ValLoss} {
			if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
				return nil, fmt.Errorf("%s:%d: %s %v", path, line, name, *v)
			}
		}
		pts = append(pts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pts, nil
}

func summarize(pts []TrainPoint) *TrainingSummary {
	s := &TrainingSummary{Points: len(pts)}
	for _, p := range pts {
		s.Steps = max(s.Steps, p.Step)
		if p.Loss != nil {
			s.FinalLoss = ptr(*p.Loss)
		}
		if p.ValLoss != nil && (s.BestValLoss == nil || *p.ValLoss < *s.BestValLoss) {
			s.BestValLoss = ptr(*p.ValLoss)
			step := p.Step
			s.BestValStep = &step
		}
	}
	return s
}
