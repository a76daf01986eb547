package pipeline

import (
	"context"
	"log/slog"
)

// logHandler turns a stage's slog records into run events, so stage code
// logs with the standard library and the run decides how to show it.
type logHandler struct {
	report func(Event)
	stage  string
	attrs  []slog.Attr
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	fields := map[string]any{}
	for _, a := range h.attrs {
		fields[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		fields[a.Key] = a.Value.Any()
		return true
	})
	if r.Level >= slog.LevelWarn {
		fields["level"] = r.Level.String()
	}
	if len(fields) == 0 {
		fields = nil
	}
	h.report(Event{Stage: h.stage, Event: "log", Msg: r.Message, Fields: fields})
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{report: h.report, stage: h.stage, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }
