package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/recipes"
)

// ClassifierScore is a checkpoint's accuracy on one split of a recipe's data.
type ClassifierScore struct {
	Split         string         `json:"split"`
	Examples      int            `json:"examples"`
	Accuracy      float64        `json:"accuracy"`
	Majority      string         `json:"majority_label"`
	MajorityRate  float64        `json:"majority_rate"`
	PointsOverMaj float64        `json:"points_over_majority"`
	ByLabel       map[string]int `json:"gold_by_label"`
	Predicted     map[string]int `json:"predicted_by_label"`
	Truncated     int            `json:"truncated"`
}

// ScoreClassifier scores a checkpoint on a split of a classification
// recipe's data, prompting it exactly as the train stage does. It reads
// the recipe's sources itself, so it needs no run folder.
func ScoreClassifier(ctx context.Context, r *recipes.Recipe, m *model.Model, tok *model.Tokenizer, split string) (ClassifierScore, error) {
	sc := ClassifierScore{Split: split, ByLabel: map[string]int{}, Predicted: map[string]int{}}
	if r.Task.Kind != "classification" || r.Data.LabelField == "" {
		return sc, Invalid(errors.New("scoring needs a classification recipe with data.label_field"))
	}
	tmp, err := os.MkdirTemp("", "distillery-score-")
	if err != nil {
		return sc, err
	}
	defer os.RemoveAll(tmp)
	if _, err := datasets.Import(ctx, ImportOptions(r, filepath.Join(tmp, ExamplesFile))); err != nil {
		return sc, Invalid(err)
	}
	rows, err := datasets.ReadSplit(filepath.Join(tmp, ExamplesFile), split)
	if err != nil {
		return sc, err
	}
	if len(rows) == 0 {
		return sc, Invalid(fmt.Errorf("the %s split is empty", split))
	}
	spec := PromptSpec(r)
	texts := map[string]string{}
	var labelled []datasets.SoftLabel
	for _, e := range rows {
		texts[e.ID] = e.Text
		labelled = append(labelled, datasets.SoftLabel{ID: e.ID, Prompt: spec.Render(e.Text), Completion: e.Label, Label: e.Label})
		sc.ByLabel[e.Label]++
	}
	seqs, st, err := distill.BuildSequences(labelled, distill.SequenceOptions{Tokenizer: tok, System: r.Teacher.SystemPrompt,
		MaxLen: r.Student.MaxSeqLen, Labels: r.Task.Labels,
		Render: func(id string, drop int) (string, bool) {
			ids := tok.Encode(texts[id])
			return spec.Render(tok.Decode(ids[:max(0, len(ids)-drop)])), true
		}})
	if err != nil {
		return sc, err
	}
	ids, err := distill.LabelTokens(tok, r.Task.Labels)
	if err != nil {
		return sc, Invalid(err)
	}
	c, err := distill.NewClassifier(m, ids)
	if err != nil {
		return sc, err
	}
	preds, err := c.Classify(ctx, seqs, 16)
	if err != nil {
		return sc, err
	}
	right := 0
	for i, p := range preds {
		label := r.Task.Labels[p.Label]
		sc.Predicted[label]++
		if label == labelled[i].Label {
			right++
		}
	}
	sc.Examples, sc.Truncated = len(seqs), st.Truncated
	sc.Accuracy = float64(right) / float64(len(seqs))
	for _, l := range r.Task.Labels {
		if sc.ByLabel[l] > sc.ByLabel[sc.Majority] || sc.Majority == "" {
			sc.Majority = l
		}
	}
	sc.MajorityRate = float64(sc.ByLabel[sc.Majority]) / float64(len(seqs))
	sc.PointsOverMaj = 100 * (sc.Accuracy - sc.MajorityRate)
	return sc, nil
}
