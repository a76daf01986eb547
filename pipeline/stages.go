package pipeline

// Stages returns the built stages. A stage of Order that is missing here is
// reported as "not built yet" and ends the run there.
func Stages() map[string]Stage {
	return map[string]Stage{
		"data":     DataStage{},
		"harvest":  HarvestStage{},
		"train":    TrainStage{},
		"quantize": QuantizeStage{},
		"eval":     EvalStage{},
		"publish":  PublishStage{},
	}
}
