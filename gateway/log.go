package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// requestInfo is what a handler tells the request log about its request.
type requestInfo struct {
	model                          string
	stream                         bool
	promptTokens, completionTokens int
	canceled                       bool
	err                            error
	// Routed mode: the key's name (never the key), the answering tier and
	// the cache result.
	tenant, tier, cache string
}

type infoKey struct{}

// infoFrom returns the request's log record (a throwaway one outside
// logRequests, so handlers need not check).
func infoFrom(r *http.Request) *requestInfo {
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// logRequests logs one structured line per request once it is answered.
func (s *Server) logRequests(h http.Handler) http.Handler { return logRequests(s.log, h) }

// logRequests logs one line per request to log; never the key or the
// prompt's text.
func logRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Duration("duration", time.Since(start)),
		}
		if info.model != "" {
			attrs = append(attrs,
				slog.String("model", info.model),
				slog.Bool("stream", info.stream),
				slog.Int("prompt_tokens", info.promptTokens),
				slog.Int("completion_tokens", info.completionTokens))
		}
		for _, a := range [][2]string{{"tenant", info.tenant}, {"tier", info.tier}, {"cache", info.cache}} {
			if a[1] != "" {
				attrs = append(attrs, slog.String(a[0], a[1]))
			}
		}
		if info.canceled {
			attrs = append(attrs, slog.Bool("client_canceled", true))
		}
		if info.err != nil {
			attrs = append(attrs, slog.String("error", info.err.Error()))
		}
		log.LogAttrs(context.WithoutCancel(r.Context()), level, "request", attrs...)
	})
}

// statusWriter records the status of a reply. It passes Flush through for
// streams, and Unwrap lets http.ResponseController reach the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
