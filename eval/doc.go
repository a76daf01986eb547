// Package eval measures a distilled student against its teacher and writes
// the eval stage's outputs: report.json (schema in eval/REPORT.md),
// report.md, a self-contained report.html, and, through Report.FillRoutes,
// the measured part of routes.json (package routes).
//
// The metrics are plain functions of parallel slices, usable on their own:
// Classify (accuracy, macro-F1, per-label precision/recall/F1, confusion
// matrix with an unparsed column, teacher agreement, KL(teacher‖model),
// ECE and reliability bins), ScoreGeneration (exact match, SQuAD token F1,
// ROUGE-L, perplexity), Latency and the cost helpers, Gate.Check (the
// parity gate) and CalibrateThreshold (the gateway's confidence threshold).
// Evaluate ties them together from the raw answers of the teacher, the
// student and its INT4 quantization.
//
// The package is pure Go; it does not depend on the model runtime or the
// trainer.
package eval
