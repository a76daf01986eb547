package gateway

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is gateway.yaml: what `distillery serve --config` runs. Every key
// is documented in docs/gateway.md; examples/gateway.yaml is a full example.
// Reading is strict: an unknown key, a wrong type or an invalid value is an
// error naming the file, line and column.
type Config struct {
	// Listen is the address served (default 127.0.0.1:8080).
	Listen string `yaml:"listen"`
	// Models are the model ids clients ask for, each with its tiers.
	Models []ModelConfig `yaml:"models"`
	// Tiers are the upstream tiers (mid, premium) shared by the models.
	Tiers   TiersConfig   `yaml:"tiers"`
	Routing RoutingConfig `yaml:"routing"`
	Cap     CapConfig     `yaml:"premium_cap"`
	Cascade CascadeConfig `yaml:"cascade"`
	Cache   CacheConfig   `yaml:"cache"`
	// Keys are the API keys; empty means no authentication (a warning is
	// logged at start).
	Keys       []KeyConfig      `yaml:"keys"`
	Limits     LimitsConfig     `yaml:"limits"`
	Accounting AccountingConfig `yaml:"accounting"`
}

// ModelConfig is one model id clients can ask for.
type ModelConfig struct {
	// Name is the id clients send as "model" ("auto" is a common choice).
	Name string `yaml:"name"`
	// Student is the local (or remote) student; absent: no student tier.
	Student *StudentConfig `yaml:"student"`
	// Capture records premium/mid answers of this model for retraining.
	Capture CaptureConfig `yaml:"capture"`
}

// StudentConfig says where the student comes from. Exactly one of Store
// (with Release), Dir or Upstream is set.
type StudentConfig struct {
	// Store is a file:// or s3:// store URL; the student is the release
	// Release that its `latest` pointer names, reloaded when it moves.
	Store   string `yaml:"store"`
	Release string `yaml:"release"`
	// Poll is how often `latest` is checked (default 30s; 0 keeps the default).
	Poll time.Duration `yaml:"poll"`
	// CacheDir is where releases are downloaded (default a temp folder).
	CacheDir string `yaml:"cache_dir"`
	// Dir is a local release folder (routes.json + artifacts) or a plain
	// checkpoint folder with tokenizer.json.
	Dir string `yaml:"dir"`
	// Upstream is a remote student host speaking the OpenAI API, such as
	// `distillery serve --model`; it must return log probabilities.
	Upstream *UpstreamConfig `yaml:"upstream"`
	// Routes is a routes.json path overriding the release's own.
	Routes string `yaml:"routes"`
	// DType is the compute dtype of a local student: f32 (default) or bf16.
	DType string `yaml:"dtype"`
	// MaxConcurrent bounds local generations at once (default 4).
	MaxConcurrent int `yaml:"max_concurrent"`
	// Threshold is the confidence threshold when there is no routes.json
	// (default 0: never escalate).
	Threshold *float64 `yaml:"threshold"`
	// Band is the complexity band when there is no routes.json (default
	// routing.student_band).
	Band []int `yaml:"band"`
	// Price is what a million student tokens cost, for accounting.
	USDPerMTok float64 `yaml:"usd_per_mtok"`
}

// CaptureConfig turns on traffic capture for a model.
type CaptureConfig struct {
	Enabled bool `yaml:"enabled"`
	// Dir receives capture-*.parquet files in the harvest (soft label) schema.
	Dir string `yaml:"dir"`
	// Dataset is a JSONL file the captured answers are appended to as
	// training examples (DatasetRow: id, text, label, ...), for a recipe's
	// data.source with teacher.kind: labels.
	Dataset string `yaml:"dataset"`
	// Tiers whose answers are captured (default [premium, mid]).
	Tiers []string `yaml:"tiers"`
	// Redact names built-in redactions applied to prompts and answers
	// before they are written: email, phone, card, digits.
	Redact []string `yaml:"redact"`
	// Rows per file before it is rotated (default 1000); Flush also rotates.
	RowsPerFile int `yaml:"rows_per_file"`
	// FlushEvery closes the current file this often (default 1m).
	FlushEvery time.Duration `yaml:"flush_every"`
}

// TiersConfig holds the upstream tiers.
type TiersConfig struct {
	Mid     *UpstreamConfig `yaml:"mid"`
	Premium *UpstreamConfig `yaml:"premium"`
}

// UpstreamConfig is an OpenAI-compatible or Anthropic endpoint.
type UpstreamConfig struct {
	// Kind is openai (default) or anthropic.
	Kind    string `yaml:"kind"`
	BaseURL string `yaml:"base_url"`
	Model   string `yaml:"model"`
	// APIKeyEnv names the environment variable holding the key (the key
	// itself is never written in the file).
	APIKeyEnv string `yaml:"api_key_env"`
	// Timeout bounds one upstream call (default 120s).
	Timeout time.Duration `yaml:"timeout"`
	// Price per million tokens, for accounting, budgets and `distillery cost`.
	Price PriceConfig `yaml:"price"`
	// MaxTokens is sent to Anthropic when the request has none (default 1024).
	MaxTokens int `yaml:"max_tokens"`
}

// PriceConfig is US dollars per million tokens.
type PriceConfig struct {
	InputPerMTok  float64 `yaml:"input_per_mtok"`
	OutputPerMTok float64 `yaml:"output_per_mtok"`
}

// RoutingConfig maps complexity scores to tiers.
type RoutingConfig struct {
	// StudentBand are the scores the student takes when there is no
	// routes.json (default [1, 2]); routes.json's complexity_band wins.
	StudentBand []int `yaml:"student_band"`
	// MidBand are the scores the mid tier takes (default [3, 4]); the rest
	// goes to premium.
	MidBand []int `yaml:"mid_band"`
	// Classifier is "model" (default: the trained logistic regression over
	// hashed features) or "features" (the hand-set rules only).
	Classifier string `yaml:"classifier"`
}

// CapConfig is the premium cap.
type CapConfig struct {
	// Share is the most premium may take, in (0, 1]; 0 disables the cap.
	Share float64 `yaml:"share"`
	// Basis is requests (default) or tokens.
	Basis string `yaml:"basis"`
	// Window is the rolling window (default 24h).
	Window time.Duration `yaml:"window"`
	// OverCap is downgrade (default: the next lower tier answers) or refuse
	// (429 premium_cap_reached).
	OverCap string `yaml:"over_cap"`
	// State is the file the counters persist in (atomically); empty keeps
	// them in memory only.
	State string `yaml:"state"`
}

// CascadeConfig is the confidence cascade.
type CascadeConfig struct {
	// Enabled (default true) lets the student answer first where its tier
	// allows and escalates answers below the threshold.
	Enabled *bool `yaml:"enabled"`
	// Stream is buffer (default: the student's answer is generated whole,
	// then streamed or escalated) or skip (streams go straight to the
	// tier the score picks, without a confidence check).
	Stream string `yaml:"stream"`
	// BufferMaxTokens caps the student's answer in buffer mode (default 256);
	// a longer answer escalates.
	BufferMaxTokens int `yaml:"buffer_max_tokens"`
}

// CacheConfig is the response cache.
type CacheConfig struct {
	Enabled bool `yaml:"enabled"`
	// Threshold is the cosine similarity a semantic hit needs (default 0.95).
	Threshold float64 `yaml:"threshold"`
	// MaxBytes bounds the memory of the entries (default 64 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// TTL expires entries (default 1h).
	TTL time.Duration `yaml:"ttl"`
	// Semantic turns on the embedding lookup (default true when enabled);
	// the exact-match path is always on.
	Semantic *bool `yaml:"semantic"`
	// Embedder is student (the student's mean-pooled final hidden state),
	// student-tokens (its mean input token embedding), hashed (lexical
	// hashed n-grams, no model) or endpoint (an OpenAI /v1/embeddings).
	Embedder string          `yaml:"embedder"`
	Endpoint *UpstreamConfig `yaml:"endpoint"`
	// AllowTemperature, AllowTools and AllowStream cache requests that are
	// skipped by default.
	AllowTemperature bool `yaml:"allow_temperature"`
	AllowTools       bool `yaml:"allow_tools"`
	AllowStream      bool `yaml:"allow_stream"`
}

// KeyConfig is one API key, stored as the sha256 of the key (hex).
type KeyConfig struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	// RPM is requests per minute (0: no limit).
	RPM int `yaml:"rpm"`
	// BudgetUSDPerDay is spent on mid and premium tiers (0: no limit).
	BudgetUSDPerDay float64 `yaml:"budget_usd_per_day"`
}

// LimitsConfig bounds requests.
type LimitsConfig struct {
	MaxBodyBytes   int64         `yaml:"max_body_bytes"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ReadTimeout bounds reading headers and body (slow clients; default 10s).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxInflight bounds requests being answered at once (default 1024).
	MaxInflight int `yaml:"max_inflight"`
	// ShutdownGrace lets streams finish on shutdown (default 15s).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// AccountingConfig says where per-request records go.
type AccountingConfig struct {
	// Dir receives records-*.parquet; empty: no records.
	Dir        string        `yaml:"dir"`
	FlushEvery time.Duration `yaml:"flush_every"`
	// RowsPerFile rotates files (default 10000).
	RowsPerFile int `yaml:"rows_per_file"`
}

// ConfigError is a problem in gateway.yaml at a position.
type ConfigError struct {
	File      string
	Line, Col int
	Key       string
	Msg       string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadConfig reads and validates gateway.yaml.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates gateway.yaml content; file names the
// source in errors. It returns every problem found (errors.Join).
func ParseConfig(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &ConfigError{File: file, Line: yamlErrLine(err), Col: 1, Msg: err.Error()}
	}
	cfg := &Config{}
	if len(root.Content) == 0 {
		return nil, &ConfigError{File: file, Msg: "empty file"}
	}
	var errs []error
	checkKeys(file, root.Content[0], reflect.TypeFor[Config](), "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := root.Content[0].Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				errs = append(errs, &ConfigError{File: file, Line: yamlErrLine(errors.New(m)), Col: 1, Msg: strings.TrimPrefix(m, "yaml: ")})
			}
			return nil, errors.Join(errs...)
		}
		return nil, &ConfigError{File: file, Msg: err.Error()}
	}
	if err := cfg.validate(file, root.Content[0]); err != nil {
		return nil, err
	}
	return cfg, nil
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// checkKeys reports keys of mapping n that t has no yaml field for, and
// repeated keys, with their line and column, recursing into known fields.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
		return
	case reflect.Struct:
		if t == reflect.TypeFor[time.Duration]() || n.Kind != yaml.MappingNode {
			return
		}
	default:
		return
	}
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			*errs = append(*errs, &ConfigError{File: file, Line: k.Line, Col: k.Column, Key: p, Msg: fmt.Sprintf("duplicate key (first at line %d)", line)})
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if s := closest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			*errs = append(*errs, &ConfigError{File: file, Line: k.Line, Col: k.Column, Key: p, Msg: msg})
			continue
		}
		checkKeys(file, v, f.Type, p, errs)
	}
}

// closest is the known name within edit distance 2 of s, if any.
func closest(s string, names []string) string {
	best, bd := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bd {
			best, bd = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// findNode returns the value node at a dotted path ("models[0].name") for
// error positions, or nil.
func findNode(n *yaml.Node, path string) *yaml.Node {
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				next = n.Content[i+1]
			}
		}
		n = next
		if idx >= 0 {
			if n == nil || n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		}
	}
	return n
}

// validate checks values and fills defaults.
func (c *Config) validate(file string, root *yaml.Node) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		e := &ConfigError{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
		if n := findNode(root, key); n != nil {
			e.Line, e.Col = n.Line, n.Column
		}
		errs = append(errs, e)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if len(c.Models) == 0 {
		bad("models", "at least one model is required")
	}
	names := map[string]bool{}
	for i := range c.Models {
		m := &c.Models[i]
		p := fmt.Sprintf("models[%d]", i)
		if m.Name == "" {
			bad(p+".name", "required")
		} else if names[m.Name] {
			bad(p+".name", "model %q is listed twice", m.Name)
		}
		names[m.Name] = true
		if s := m.Student; s != nil {
			set := 0
			for _, b := range []bool{s.Store != "", s.Dir != "", s.Upstream != nil} {
				if b {
					set++
				}
			}
			if set != 1 {
				bad(p+".student", "set exactly one of store (with release), dir or upstream")
			}
			if s.Store != "" && s.Release == "" {
				bad(p+".student.release", "required with store")
			}
			if s.Poll < 0 {
				bad(p+".student.poll", "must not be negative")
			}
			if s.Poll == 0 {
				s.Poll = 30 * time.Second
			}
			if s.DType != "" && s.DType != "f32" && s.DType != "bf16" {
				bad(p+".student.dtype", "want f32 or bf16, got %q", s.DType)
			}
			if s.MaxConcurrent <= 0 {
				s.MaxConcurrent = DefaultMaxConcurrent
			}
			if s.Threshold != nil && (*s.Threshold < 0 || *s.Threshold > 1.01) {
				bad(p+".student.threshold", "want a value in [0, 1.01]")
			}
			if len(s.Band) > 0 && !validBand(s.Band) {
				bad(p+".student.band", "want scores in [1, 5]")
			}
			if s.Upstream != nil {
				c.checkUpstream(p+".student.upstream", s.Upstream, bad)
			}
		}
		if m.Capture.Enabled {
			if m.Capture.Dir == "" && m.Capture.Dataset == "" {
				bad(p+".capture.dir", "capture.dir or capture.dataset is required when capture is enabled")
			}
			if len(m.Capture.Tiers) == 0 {
				m.Capture.Tiers = []string{TierPremium, TierMid}
			}
			for j, t := range m.Capture.Tiers {
				if t != TierStudent && t != TierMid && t != TierPremium {
					bad(fmt.Sprintf("%s.capture.tiers[%d]", p, j), "want student, mid or premium, got %q", t)
				}
			}
			for j, r := range m.Capture.Redact {
				if _, ok := redactors[r]; !ok {
					bad(fmt.Sprintf("%s.capture.redact[%d]", p, j), "unknown redaction %q (want email, phone, card or digits)", r)
				}
			}
			if m.Capture.RowsPerFile <= 0 {
				m.Capture.RowsPerFile = 1000
			}
			if m.Capture.FlushEvery <= 0 {
				m.Capture.FlushEvery = time.Minute
			}
		}
	}
	if c.Tiers.Mid != nil {
		c.checkUpstream("tiers.mid", c.Tiers.Mid, bad)
	}
	if c.Tiers.Premium != nil {
		c.checkUpstream("tiers.premium", c.Tiers.Premium, bad)
	}
	r := &c.Routing
	if len(r.StudentBand) == 0 {
		r.StudentBand = []int{1, 2}
	} else if !validBand(r.StudentBand) {
		bad("routing.student_band", "want scores in [1, 5]")
	}
	if len(r.MidBand) == 0 {
		r.MidBand = []int{3, 4}
	} else if !validBand(r.MidBand) {
		bad("routing.mid_band", "want scores in [1, 5]")
	}
	switch r.Classifier {
	case "":
		r.Classifier = "model"
	case "model", "features":
	default:
		bad("routing.classifier", "want model or features, got %q", r.Classifier)
	}
	cp := &c.Cap
	if cp.Share < 0 || cp.Share > 1 {
		bad("premium_cap.share", "want a share in [0, 1], got %g", cp.Share)
	}
	switch cp.Basis {
	case "":
		cp.Basis = "requests"
	case "requests", "tokens":
	default:
		bad("premium_cap.basis", "want requests or tokens, got %q", cp.Basis)
	}
	if cp.Window == 0 {
		cp.Window = 24 * time.Hour
	} else if cp.Window < time.Minute {
		bad("premium_cap.window", "want at least 1m")
	}
	switch cp.OverCap {
	case "":
		cp.OverCap = "downgrade"
	case "downgrade", "refuse":
	default:
		bad("premium_cap.over_cap", "want downgrade or refuse, got %q", cp.OverCap)
	}
	cc := &c.Cascade
	if cc.Enabled == nil {
		t := true
		cc.Enabled = &t
	}
	switch cc.Stream {
	case "":
		cc.Stream = "buffer"
	case "buffer", "skip":
	default:
		bad("cascade.stream", "want buffer or skip, got %q", cc.Stream)
	}
	if cc.BufferMaxTokens <= 0 {
		cc.BufferMaxTokens = 256
	}
	ca := &c.Cache
	if ca.Threshold == 0 {
		ca.Threshold = 0.95
	} else if ca.Threshold < 0 || ca.Threshold > 1 {
		bad("cache.threshold", "want a cosine in [0, 1], got %g", ca.Threshold)
	}
	if ca.MaxBytes <= 0 {
		ca.MaxBytes = 64 << 20
	}
	if ca.TTL <= 0 {
		ca.TTL = time.Hour
	}
	if ca.Semantic == nil {
		t := true
		ca.Semantic = &t
	}
	switch ca.Embedder {
	case "":
		// Not student: a causal LM's mean hidden state is no sentence
		// embedding (TestCacheParaphraseRates: 0.90 false hits at 0.95).
		ca.Embedder = "hashed"
	case "student", "student-tokens", "hashed":
	case "endpoint":
		if ca.Endpoint == nil {
			bad("cache.endpoint", "required with embedder: endpoint")
		} else {
			c.checkUpstream("cache.endpoint", ca.Endpoint, bad)
		}
	default:
		bad("cache.embedder", "want student, student-tokens, hashed or endpoint, got %q", ca.Embedder)
	}
	for i, k := range c.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		if k.Name == "" {
			bad(p+".name", "required")
		}
		if len(k.SHA256) != 64 || strings.Trim(strings.ToLower(k.SHA256), "0123456789abcdef") != "" {
			bad(p+".sha256", "want the 64 hex digits of the key's sha256 (distillery serve hash-key prints it)")
		}
		if k.RPM < 0 || k.BudgetUSDPerDay < 0 {
			bad(p, "rpm and budget_usd_per_day must not be negative")
		}
	}
	l := &c.Limits
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = 5 * time.Minute
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = 10 * time.Second
	}
	if l.MaxInflight <= 0 {
		l.MaxInflight = 1024
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = 15 * time.Second
	}
	if c.Accounting.FlushEvery <= 0 {
		c.Accounting.FlushEvery = time.Minute
	}
	if c.Accounting.RowsPerFile <= 0 {
		c.Accounting.RowsPerFile = 10000
	}
	return errors.Join(errs...)
}

func (c *Config) checkUpstream(p string, u *UpstreamConfig, bad func(string, string, ...any)) {
	switch u.Kind {
	case "":
		u.Kind = "openai"
	case "openai", "anthropic":
	default:
		bad(p+".kind", "want openai or anthropic, got %q", u.Kind)
	}
	if u.BaseURL == "" {
		bad(p+".base_url", "required")
	} else if !strings.HasPrefix(u.BaseURL, "http://") && !strings.HasPrefix(u.BaseURL, "https://") {
		bad(p+".base_url", "want an http:// or https:// URL")
	}
	u.BaseURL = strings.TrimRight(u.BaseURL, "/")
	if u.Model == "" {
		bad(p+".model", "required")
	}
	if u.APIKeyEnv != "" && strings.HasPrefix(u.APIKeyEnv, "sk-") {
		bad(p+".api_key_env", "name the environment variable holding the key, not the key")
	}
	if u.Timeout <= 0 {
		u.Timeout = 120 * time.Second
	}
	if u.MaxTokens <= 0 {
		u.MaxTokens = 1024
	}
	if u.Price.InputPerMTok < 0 || u.Price.OutputPerMTok < 0 {
		bad(p+".price", "prices must not be negative")
	}
}

func validBand(b []int) bool {
	for _, s := range b {
		if s < 1 || s > 5 {
			return false
		}
	}
	return true
}

// inBand reports whether score is within band: [lo, hi] for two entries,
// else membership.
func inBand(band []int, score int) bool {
	if len(band) == 2 && band[0] <= band[1] {
		return score >= band[0] && score <= band[1]
	}
	for _, s := range band {
		if s == score {
			return true
		}
	}
	return false
}
