package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute"

	"github.com/distillery/distillery/datasets"
	"github.com/distillery/distillery/model"
	"github.com/distillery/distillery/openai"
)

// Tiers, cheapest first.
const (
	TierStudent = "student"
	TierMid     = "mid"
	TierPremium = "premium"
	TierCache   = "cache"
)

// Response headers that explain each answer.
const (
	HeaderModel      = "X-Distillery-Model"
	HeaderTier       = "X-Distillery-Tier"
	HeaderReason     = "X-Distillery-Route-Reason"
	HeaderCache      = "X-Distillery-Cache"
	HeaderComplexity = "X-Distillery-Complexity"
	HeaderConfidence = "X-Distillery-Confidence"
	HeaderEscalated  = "X-Distillery-Escalated"
	HeaderVersion    = "X-Distillery-Student-Version"
	HeaderRequestID  = "X-Request-Id"
)

// GatewayOptions are what a Gateway takes besides its Config.
type GatewayOptions struct {
	// Logger gets one line per request (never a key or prompt text).
	Logger *slog.Logger
	// Now is the clock (tests replay days in seconds).
	Now func() time.Time
	// Backend runs local students; nil starts model.NewBackend("").
	Backend compute.Backend
	// Redact is a hook applied to captured text after the configured
	// redactions.
	Redact Redactor
}

// Gateway routes OpenAI API requests between a student, a mid tier and a
// premium tier: `distillery serve --config`.
type Gateway struct {
	cfg      *Config
	log      *slog.Logger
	now      func() time.Time
	models   map[string]*routedModel
	names    []string
	mid      *upstream
	premium  *upstream
	cls      *classifier
	cap      *premiumCap
	cache    *responseCache
	embedder Embedder // nil: the student's own (per version)
	keys     *keyring
	inflight chan struct{}
	records  *rotatingWriter[Record]
	met      *metrics
	handler  http.Handler
	created  int64
	draining atomic.Bool
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	cacheq   chan func()
	closed   sync.Once
}

// routedModel is a model id clients ask for.
type routedModel struct {
	name    string
	cfg     ModelConfig
	student *student
	capture *rotatingWriter[datasets.SoftLabel]
	dataset *datasetWriter
	redact  Redactor
}

func (m *routedModel) version() *studentVersion {
	if m.student == nil {
		return nil
	}
	return m.student.current()
}

// NewGateway loads the students, opens the upstreams and the state files.
// Close releases them.
func NewGateway(ctx context.Context, cfg *Config, opts GatewayOptions) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, now: opts.Now, models: map[string]*routedModel{},
		inflight: make(chan struct{}, cfg.Limits.MaxInflight), created: opts.Now().Unix(), cacheq: make(chan func(), 1024)}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	var err error
	if g.cls, err = newClassifier(cfg.Routing.Classifier); err != nil {
		return nil, err
	}
	if cfg.Tiers.Mid != nil {
		if g.mid, err = newUpstream(TierMid, *cfg.Tiers.Mid); err != nil {
			return nil, err
		}
	}
	if cfg.Tiers.Premium != nil {
		if g.premium, err = newUpstream(TierPremium, *cfg.Tiers.Premium); err != nil {
			return nil, err
		}
	}
	if g.cap, err = newPremiumCap(cfg.Cap, g.now); err != nil {
		return nil, err
	}
	g.keys = newKeyring(cfg.Keys, g.now)
	if len(cfg.Keys) == 0 {
		g.log.Warn("gateway: no API keys configured; every client is let in as tenant \"anonymous\"")
	}
	if cfg.Cache.Enabled {
		g.cache = newResponseCache(cfg.Cache, g.now)
		switch cfg.Cache.Embedder {
		case "hashed":
			g.embedder = hashedEmbedder{dim: 512}
		case "endpoint":
			u, err := newUpstream("embeddings", *cfg.Cache.Endpoint)
			if err != nil {
				return nil, err
			}
			g.embedder = upstreamEmbedder{u}
		}
	}
	g.met = newMetrics(g)
	var back compute.Backend
	for _, mc := range cfg.Models {
		rm := &routedModel{name: mc.Name, cfg: mc}
		if mc.Student != nil {
			if back == nil && mc.Student.Upstream == nil {
				if back = opts.Backend; back == nil {
					if back, err = model.NewBackend(""); err != nil {
						return nil, err
					}
				}
			}
			embedder := "" // the student embeds only for a semantic cache
			if cfg.Cache.Enabled && cfg.Cache.Semantic != nil && *cfg.Cache.Semantic {
				embedder = cfg.Cache.Embedder
			}
			if rm.student, err = newStudent(ctx, mc.Name, *mc.Student, embedder, back, g.log); err != nil {
				return nil, err
			}
			name := mc.Name
			rm.student.onSwap = func(_, _ *studentVersion) { g.met.reloads.WithLabelValues(name).Inc() }
		}
		if mc.Capture.Enabled {
			rm.redact = chainRedactors(mc.Capture.Redact, opts.Redact)
			if mc.Capture.Dir != "" {
				if rm.capture, err = newRotatingWriter(mc.Capture.Dir, "capture", mc.Capture.RowsPerFile, mc.Capture.FlushEvery, g.log, openSoftLabels); err != nil {
					return nil, err
				}
			}
			if mc.Capture.Dataset != "" {
				if rm.dataset, err = newDatasetWriter(mc.Capture.Dataset, mc.Capture.FlushEvery, g.log); err != nil {
					return nil, err
				}
			}
		}
		g.models[mc.Name] = rm
		g.names = append(g.names, mc.Name)
	}
	sort.Strings(g.names)
	if cfg.Accounting.Dir != "" {
		if g.records, err = newRotatingWriter(cfg.Accounting.Dir, "records", cfg.Accounting.RowsPerFile, cfg.Accounting.FlushEvery, g.log, openParquet[Record]); err != nil {
			return nil, err
		}
	}
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.bgCancel = cancel
	for _, rm := range g.models {
		if rm.student != nil && rm.student.store != nil {
			g.bg.Add(1)
			go func() { defer g.bg.Done(); rm.student.poll(bgCtx) }()
		}
	}
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		for {
			select {
			case f := <-g.cacheq:
				f()
			case <-bgCtx.Done():
				return
			}
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/v1/chat/completions", only(http.MethodPost, g.chat))
	mux.Handle("/v1/completions", only(http.MethodPost, g.complete))
	mux.Handle("/v1/models", only(http.MethodGet, g.modelList))
	mux.Handle("/v1/models/{id...}", only(http.MethodGet, g.modelOne))
	mux.Handle("/healthz", only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Handle("/readyz", only(http.MethodGet, g.ready))
	mux.Handle("/metrics", g.met.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, http.StatusNotFound, openai.InvalidRequestError, "unknown_url", "",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	})
	g.handler = logRequests(g.log, mux)
	ok = true
	return g, nil
}

// Handler is the gateway's HTTP API.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Serve serves on ln until ctx ends, then drains requests in flight
// (streams included) for limits.shutdown_grace and closes the gateway.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	defer g.Close()
	return serveListener(ctx, ln, g.handler, serveConfig{
		grace: g.cfg.Limits.ShutdownGrace, readHeader: g.cfg.Limits.ReadTimeout,
		onShutdown: func() { g.draining.Store(true) },
	})
}

// Close stops the reloaders and flushes the records, the captures and the
// cap's state.
func (g *Gateway) Close() error {
	var err error
	g.closed.Do(func() {
		if g.bgCancel != nil {
			g.bgCancel()
		}
		g.bg.Wait()
		g.records.Close()
		for _, m := range g.models {
			m.capture.Close()
			m.dataset.Close()
		}
		err = g.cap.Close()
	})
	return err
}

// Flush makes the records and captures written so far visible as files.
func (g *Gateway) Flush() {
	if g.records != nil {
		g.records.Flush()
	}
	for _, m := range g.models {
		if m.capture != nil {
			m.capture.Flush()
		}
		m.dataset.Flush()
	}
}

// Reload checks every store-backed student's `latest` now (the pollers do
// it every student.poll).
func (g *Gateway) Reload(ctx context.Context) error {
	var errs []error
	for _, m := range g.models {
		if m.student != nil && m.student.store != nil {
			errs = append(errs, m.student.checkLatest(ctx))
		}
	}
	return errors.Join(errs...)
}

func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	versions := map[string]string{}
	for name, m := range g.models {
		if sv := m.version(); sv != nil {
			versions[name] = sv.version
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "students": versions})
}

func (g *Gateway) modelList(w http.ResponseWriter, r *http.Request) {
	if _, e := g.keys.auth(r); e != nil {
		e.write(w)
		return
	}
	list := openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{}}
	for _, n := range g.names {
		list.Data = append(list.Data, openai.Model{ID: n, Object: openai.ObjectModel, Created: g.created, OwnedBy: ownedBy})
	}
	writeJSON(w, http.StatusOK, list)
}

func (g *Gateway) modelOne(w http.ResponseWriter, r *http.Request) {
	if _, e := g.keys.auth(r); e != nil {
		e.write(w)
		return
	}
	id := r.PathValue("id")
	if _, ok := g.models[id]; !ok {
		modelNotFound(id, "").write(w)
		return
	}
	writeJSON(w, http.StatusOK, openai.Model{ID: id, Object: openai.ObjectModel, Created: g.created, OwnedBy: ownedBy})
}

func modelNotFound(id, param string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: openai.InvalidRequestError, code: "model_not_found", param: param,
		msg: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", id)}
}

// upstreamFor returns a tier's upstream (nil when not configured).
func (g *Gateway) upstreamFor(tier string) *upstream {
	switch tier {
	case TierMid:
		return g.mid
	case TierPremium:
		return g.premium
	}
	return nil
}

// price is a tier's US dollars per prompt and per completion token.
func (g *Gateway) price(tier string, sv *studentVersion) (in, out float64) {
	if u := g.upstreamFor(tier); u != nil {
		return u.cfg.Price.InputPerMTok / 1e6, u.cfg.Price.OutputPerMTok / 1e6
	}
	if tier == TierStudent && sv != nil {
		return sv.usdPerTok, sv.usdPerTok
	}
	return 0, 0
}

// admitGate limits requests in flight.
func (g *Gateway) admitGate() (func(), bool) {
	select {
	case g.inflight <- struct{}{}:
		g.met.inflight.Inc()
		return func() { <-g.inflight; g.met.inflight.Dec() }, true
	default:
		return nil, false
	}
}

// estimateTokens approximates a text's tokens (4 bytes a token).
func estimateTokens(n int) int { return n/4 + 1 }
