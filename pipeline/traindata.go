package pipeline

import (
	"errors"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/distill"
	"github.com/distillery/distillery/model"
)

// trainSet is what the trainer gets from the earlier stages.
type trainSet struct {
	train, val []distill.Sequence
	k          int
	spec       distill.KDSpec
	labelIDs   []int32
	stats      distill.SequenceStats
}

// trainData builds the training and val sequences: packed raw text for
// task.kind lm, else the harvested answers in the student's chat format.
func trainData(sc *StageContext, tok *model.Tokenizer) (*trainSet, error) {
	r := sc.Recipe
	examples, err := datasets.ReadExamples(sc.UpstreamFile("data", ExamplesFile))
	if err != nil {
		return nil, err
	}
	d := &trainSet{spec: distill.KDSpec{Kind: "ce", Temperature: 1, Alpha: 0, Beta: 0.5}}
	if r.Task.Kind == "lm" {
		texts := map[string][]string{}
		for _, e := range examples {
			texts[e.Split] = append(texts[e.Split], e.Text)
		}
		var vst distill.SequenceStats
		if d.train, d.stats, err = distill.PackText(tok, texts["train"], r.Student.MaxSeqLen); err != nil {
			return nil, err
		}
		if len(texts["val"]) > 0 {
			if d.val, vst, err = distill.PackText(tok, texts["val"], r.Student.MaxSeqLen); err != nil {
				return nil, err
			}
		}
		sc.Log.Info("packed text for pretraining", "blocks", len(d.train), "tokens", d.stats.Tokens, "val_blocks", len(d.val), "val_tokens", vst.Tokens)
		return d, nil
	}
	rows, err := datasets.ReadSoftLabels(sc.UpstreamFile("harvest", SoftLabelsFile))
	if err != nil {
		return nil, err
	}
	texts := map[string]string{}
	for _, e := range examples {
		texts[e.ID] = e.Text
	}
	spec := PromptSpec(r)
	o := distill.SequenceOptions{Tokenizer: tok, System: r.Teacher.SystemPrompt, MaxLen: r.Student.MaxSeqLen,
		Labels: r.Task.Labels,
		Render: func(id string, drop int) (string, bool) {
			text, ok := texts[id]
			if !ok {
				return "", false
			}
			ids := tok.Encode(text)
			return spec.Render(tok.Decode(ids[:max(0, len(ids)-drop)])), true
		}}
	l := r.Train.Loss
	d.spec = distill.KDSpec{Kind: l.Kind, Temperature: l.Temperature, Alpha: l.Alpha, Beta: l.Beta}
	if r.Teacher.Kind == "labels" {
		d.spec.Kind = "ce" // gold labels: supervised fine-tuning
	}
	o.TokenKD = d.spec.Kind != "ce" && r.Task.Kind == "generation"
	bySplit := map[string][]datasets.SoftLabel{}
	for _, row := range rows {
		bySplit[row.Split] = append(bySplit[row.Split], row)
	}
	if d.train, d.stats, err = distill.BuildSequences(bySplit["train"], o); err != nil {
		if errors.Is(err, distill.ErrTokenizerMismatch) {
			return nil, Invalid(err)
		}
		return nil, err
	}
	if d.val, _, err = distill.BuildSequences(bySplit["val"], o); err != nil {
		return nil, err
	}
	if len(d.train) == 0 {
		return nil, Invalid(errors.New("the harvest has no rows in the train split"))
	}
	if d.spec.Kind != "ce" && d.stats.SoftPositions == 0 {
		sc.Log.Warn("the teacher's answers carry no log-probabilities: training on its text with cross-entropy (sequence-level KD)", "loss", d.spec.Kind)
		d.spec.Kind = "ce"
	}
	if r.Task.Kind == "classification" {
		d.k = len(r.Task.Labels)
		if d.labelIDs, err = distill.LabelTokens(tok, r.Task.Labels); err != nil {
			return nil, Invalid(err)
		}
	} else {
		for _, s := range d.train {
			for _, st := range s.Soft {
				d.k = max(d.k, len(st.IDs))
			}
		}
	}
	return d, nil
}
