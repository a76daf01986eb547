package recipes

import (
	"encoding/json"
	"time"
)

// The recipe schema. Field tags drive decoding, validation and the generated
// reference in docs/recipe.md:
//
//	json:"key"          the YAML/JSON key
//	doc:"..."           one-line description for the reference
//	required:"true"     the key must be present
//	default:"v"         value when the key is absent (lists: comma-separated)
//	enum:"a|b"          allowed values (strings, or each element of a list)
//	range:"[0,1)"       allowed numeric interval, brackets inclusive, parens exclusive
//	alias:"lr"          another accepted spelling of the key
//	pattern:"name"      a named format check (see formats in validate.go)
//
// Later stages extend their own section here; validation picks the new
// fields up without further wiring.

// Recipe is one distillation job: what to ask the teacher, which student to
// train, and how to check and ship it.
type Recipe struct {
	Name        string   `json:"name" required:"true" pattern:"name" doc:"Recipe name; runs are kept under runs/<name>/."`
	Description string   `json:"description,omitempty" doc:"Free text shown by 'runs list'."`
	Task        Task     `json:"task" required:"true" doc:"What the student learns to do."`
	Data        Data     `json:"data" required:"true" doc:"Where the prompts come from and how they are split."`
	Teacher     Teacher  `json:"teacher" doc:"The LLM whose answers are distilled (required unless task.kind is lm)."`
	Student     Student  `json:"student" required:"true" doc:"The small model that is trained."`
	LoRA        LoRA     `json:"lora" doc:"Low-rank adapters trained on the frozen student; 'lora: none' trains all weights (full fine-tuning)."`
	Train       Train    `json:"train" doc:"Optimiser, schedule and distillation loss."`
	Quantize    Quantize `json:"quantize" doc:"Weight quantization of the trained student."`
	Eval        Eval     `json:"eval" doc:"Metrics and the parity gate that must pass before publishing."`
	Publish     Publish  `json:"publish" doc:"Where the artifacts go."`
	Routing     Routing  `json:"routing" doc:"Metadata that tells the gateway which requests the student serves."`

	// Dir is the folder of the recipe file; relative paths resolve against it.
	Dir string `json:"-"`

	secrets map[string]string // key path -> env var, for values that must be redacted
	// File is the recipe's path as given.
	File string `json:"-"`
}

// Task says what the student does.
type Task struct {
	Kind           string   `json:"kind" required:"true" enum:"classification|generation|lm" doc:"classification: answer one of the labels; generation: free text (e.g. extraction); lm: causal language-model pretraining on the raw texts (no teacher, no prompt)."`
	Labels         []string `json:"labels,omitempty" doc:"The label set, for classification (at least two, unique)."`
	Instruction    string   `json:"instruction,omitempty" doc:"Instruction put before each input in the prompt."`
	PromptTemplate string   `json:"prompt_template" default:"{instruction}\n\n{text}" doc:"Prompt layout; placeholders {instruction}, {text} and {labels} (comma-separated label set). Must contain {text}."`
	MaxInputChars  int      `json:"max_input_chars" default:"0" range:"[0,inf)" doc:"Cut each input text to at most this many characters (at a word boundary) before it goes into the prompt: bounds the teacher's cost and the student's context. The gateway cuts requests the same way (0: no limit)."`
}

// Data describes the input prompts.
type Data struct {
	Source      []DataSource `json:"source" required:"true" doc:"A file path, or a list of {path, format, split}. JSONL, CSV or Parquet."`
	TextField   string       `json:"text_field" default:"text" doc:"Field (column) holding the input text."`
	LabelField  string       `json:"label_field,omitempty" doc:"Field holding a gold label, if any."`
	IDField     string       `json:"id_field,omitempty" doc:"Field holding a stable row id; default: a hash of the normalised text."`
	Split       Split        `json:"split" doc:"Hash-based train/val/test split of rows whose source has no fixed split."`
	Dedupe      bool         `json:"dedupe" default:"true" doc:"Drop rows whose normalised text repeats an earlier row."`
	SkipInvalid bool         `json:"skip_invalid" default:"false" doc:"Skip and count bad rows instead of failing."`
	MaxExamples int          `json:"max_examples" default:"0" range:"[0,inf)" doc:"Use at most this many rows in all, taken from each split in proportion (0: all): a cheap trial run."`
}

// DataSource is one input file.
type DataSource struct {
	Path   string `json:"path" required:"true" doc:"File path, relative to the recipe."`
	Format string `json:"format" default:"auto" enum:"auto|jsonl|csv|parquet" doc:"File format; auto picks by extension."`
	Split  string `json:"split,omitempty" enum:"|train|val|test" doc:"Put every row of this file in one split instead of hashing."`
}

// Split holds the split fractions.
type Split struct {
	Train float64 `json:"train" default:"0.8" range:"[0,1]" doc:"Share of rows for training."`
	Val   float64 `json:"val" default:"0.1" range:"[0,1]" doc:"Share for validation (early stopping, calibration)."`
	Test  float64 `json:"test" default:"0.1" range:"[0,1]" doc:"Share for the final evaluation."`
	Seed  string  `json:"seed" default:"distillery" doc:"Salt of the split hash; change it to draw a different split."`
}

// Teacher is the model whose answers the student learns from.
type Teacher struct {
	Kind              string    `json:"kind" default:"openai" enum:"openai|anthropic|labels" doc:"openai: any OpenAI-compatible chat API (OpenAI, Azure, vLLM, distillery's own server); anthropic: Messages API (no log-probabilities); labels: the dataset's gold labels stand in for a teacher."`
	Model             string    `json:"model,omitempty" doc:"Model name sent to the API. Required unless kind is labels."`
	BaseURL           string    `json:"base_url,omitempty" pattern:"url" doc:"API base URL, e.g. https://api.openai.com/v1."`
	APIKeyEnv         string    `json:"api_key_env,omitempty" pattern:"envname" doc:"Name of the environment variable holding the API key. Keys are never written in recipes, run folders or logs."`
	Mode              string    `json:"mode" default:"online" enum:"online|batch" doc:"online: one request per prompt; batch: the OpenAI Batch API."`
	SystemPrompt      string    `json:"system_prompt,omitempty" doc:"System message sent with every request."`
	FewShot           []FewShot `json:"few_shot,omitempty" doc:"Example exchanges put before each prompt."`
	Temperature       float64   `json:"temperature" default:"0" range:"[0,2]" doc:"Sampling temperature."`
	MaxTokens         int       `json:"max_tokens" default:"256" range:"[1,1000000]" doc:"Maximum completion tokens per request."`
	TopLogprobs       int       `json:"top_logprobs" default:"20" range:"[0,20]" doc:"Top-k log-probabilities requested per token (the soft labels)."`
	Concurrency       int       `json:"concurrency" default:"8" range:"[1,1024]" doc:"Requests in flight at once."`
	RequestsPerMinute float64   `json:"requests_per_minute" default:"0" range:"[0,inf)" doc:"Request rate limit (0: none)."`
	TokensPerMinute   float64   `json:"tokens_per_minute" default:"0" range:"[0,inf)" doc:"Token rate limit (0: none)."`
	MaxRetries        int       `json:"max_retries" default:"6" range:"[0,100]" doc:"Retries of a request that failed with 429, 5xx or a network error."`
	Timeout           Duration  `json:"timeout" default:"60s" range:"(0,inf)" doc:"Per-request timeout, e.g. 60s."`
	Price             Price     `json:"price" doc:"Prices used to count spending."`
	BudgetUSD         float64   `json:"budget_usd" default:"0" range:"[0,inf)" doc:"Hard spending cap in US dollars for the harvest (0: no cap)."`
}

// FewShot is one example exchange.
type FewShot struct {
	Input  string `json:"input" required:"true" doc:"Example user input."`
	Output string `json:"output" required:"true" doc:"Expected answer."`
}

// Price is the provider's price per million tokens.
type Price struct {
	InputPerMTok  float64 `json:"input_per_mtok" default:"0" range:"[0,inf)" doc:"US dollars per million input tokens."`
	OutputPerMTok float64 `json:"output_per_mtok" default:"0" range:"[0,inf)" doc:"US dollars per million output tokens."`
}

// Student is the model being trained.
type Student struct {
	Base      string `json:"base" required:"true" doc:"Folder of a HuggingFace-format checkpoint (config.json, model.safetensors, tokenizer.json), relative to the recipe."`
	Tokenizer string `json:"tokenizer,omitempty" doc:"Folder or tokenizer.json to use instead of the one in base."`
	Dtype     string `json:"dtype" default:"f32" enum:"f32|bf16" doc:"Compute dtype."`
	MaxSeqLen int    `json:"max_seq_len" default:"512" range:"[8,131072]" doc:"Longest prompt + completion in tokens; longer rows are truncated."`
	Backend   string `json:"backend,omitempty" doc:"GoMLX backend, e.g. go:ops_sequential or xla:/path/xla_cuda_plugin.so (default: $GOMLX_BACKEND, else go:ops_sequential)."`
}

// LoRA configures the adapters.
type LoRA struct {
	Enabled       bool     `json:"enabled" default:"true" doc:"Train adapters; false trains all weights."`
	Rank          int      `json:"rank" default:"16" range:"[1,4096]" doc:"Adapter rank r."`
	Alpha         float64  `json:"alpha" default:"32" range:"(0,inf)" doc:"Scaling numerator: the update is scaled by alpha/r (alpha/sqrt(r) with rslora)."`
	Dropout       float64  `json:"dropout" default:"0.05" range:"[0,1)" doc:"Dropout on the adapter input."`
	TargetModules []string `json:"target_modules" default:"q_proj,v_proj" enum:"q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|all-linear" doc:"Linear layers that get adapters, by HF name, or all-linear."`
	RSLoRA        bool     `json:"rslora" default:"false" doc:"Rank-stabilised scaling alpha/sqrt(r)."`
	ModulesToSave []string `json:"modules_to_save,omitempty" enum:"lm_head|embed_tokens" doc:"Modules trained as full copies (e.g. lm_head)."`
}

// Train configures the optimiser and the loss.
type Train struct {
	Epochs            float64 `json:"epochs" default:"3" range:"(0,1000]" doc:"Passes over the training split."`
	MaxSteps          int     `json:"max_steps" default:"0" range:"[0,inf)" doc:"Stop after this many optimiser steps (0: use epochs)."`
	LearningRate      float64 `json:"learning_rate" alias:"lr" default:"2e-4" range:"(0,1]" doc:"Peak learning rate of AdamW."`
	BatchSize         int     `json:"batch_size" default:"16" range:"[1,65536]" doc:"Examples per micro-batch."`
	GradAccum         int     `json:"grad_accum" default:"1" range:"[1,4096]" doc:"Micro-batches per optimiser step."`
	WarmupRatio       float64 `json:"warmup_ratio" default:"0.03" range:"[0,1)" doc:"Share of steps with linear warm-up before cosine decay."`
	WeightDecay       float64 `json:"weight_decay" default:"0" range:"[0,1]" doc:"AdamW decoupled weight decay."`
	MaxGradNorm       float64 `json:"max_grad_norm" default:"1" range:"[0,inf)" doc:"Global gradient-norm clip (0: off)."`
	Seed              int     `json:"seed" default:"42" doc:"Seed for initialisation, shuffling and dropout."`
	EvalEvery         int     `json:"eval_every" default:"100" range:"[0,inf)" doc:"Evaluate on the val split every N steps (0: only at the end)."`
	EarlyStopPatience int     `json:"early_stop_patience" default:"0" range:"[0,inf)" doc:"Stop after N evaluations without improvement of the val loss, keeping the best weights (0: never)."`
	SaveEvery         int     `json:"save_every" default:"0" range:"[0,inf)" doc:"Write a resumable checkpoint every N steps (0: at each evaluation, else every 50)."`
	Loss              Loss    `json:"loss" doc:"Distillation loss."`
}

// Loss selects the distillation objective.
type Loss struct {
	Kind        string  `json:"kind" default:"forward_kl" enum:"forward_kl|reverse_kl|jsd|ce" doc:"forward_kl, reverse_kl, generalised jsd, or plain cross-entropy on the teacher's text."`
	Temperature float64 `json:"temperature" default:"2" range:"(0,100]" doc:"Softening temperature T; the KD term is scaled by T^2."`
	Alpha       float64 `json:"alpha" default:"0.5" range:"[0,1]" doc:"Weight of the KD term; 1-alpha goes to hard-label cross-entropy."`
	Beta        float64 `json:"beta" default:"0.5" range:"(0,1)" doc:"Mixing weight of the generalised JSD."`
}

// Quantize configures post-training quantization.
type Quantize struct {
	Method              string   `json:"method" default:"awq" enum:"awq|rtn|int8|none" doc:"awq: activation-aware INT4; rtn: round-to-nearest INT4; int8: per-channel INT8; none: keep 16-bit."`
	GroupSize           int      `json:"group_size" default:"128" enum:"32|64|128" doc:"Input channels per quantization group (INT4)."`
	CalibSamples        int      `json:"calib_samples" default:"128" range:"[1,100000]" doc:"Calibration prompts taken from the train split."`
	ClipSearch          bool     `json:"clip_search" default:"true" doc:"Search weight clipping ranges (AWQ)."`
	ModulesToNotConvert []string `json:"modules_to_not_convert,omitempty" doc:"Module names kept in 16-bit."`
}

// Eval configures the evaluation and the parity gate.
type Eval struct {
	Metric          string  `json:"metric,omitempty" enum:"|accuracy|macro_f1|exact_match|token_f1|rouge_l" doc:"Gate metric; default accuracy for classification, rouge_l for generation."`
	MinParity       float64 `json:"min_parity" default:"0.95" range:"[0,10]" doc:"Gate: student metric / teacher metric must be at least this."`
	MaxInt4Drop     float64 `json:"max_int4_drop" default:"0.01" range:"[0,1]" doc:"Gate: fp metric minus INT4 metric must be at most this."`
	NoRegression    bool    `json:"no_regression" default:"false" doc:"Gate: the served model must score at least what the currently published version scored (the report always compares them)."`
	MaxExamples     int     `json:"max_examples" default:"0" range:"[0,inf)" doc:"Evaluate at most this many test rows (0: all)."`
	HardwareUSDHour float64 `json:"hardware_usd_per_hour" default:"0" range:"[0,inf)" doc:"Serving hardware price, for the student's cost per 1M tokens."`
}

// Publish says where artifacts go.
type Publish struct {
	Store        string `json:"store" default:"file://published" pattern:"storeurl" doc:"file://DIR (relative to the recipe) or s3://bucket/prefix."`
	Name         string `json:"name,omitempty" pattern:"name" doc:"Model name in the store (default: the recipe name)."`
	CreateBucket bool   `json:"create_bucket" default:"false" doc:"Create a missing S3 bucket instead of failing."`
	S3           S3     `json:"s3" doc:"S3 connection settings; credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."`
}

// S3 holds connection settings for s3:// stores.
type S3 struct {
	Endpoint  string `json:"endpoint,omitempty" doc:"host:port or URL of the S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)."`
	Region    string `json:"region,omitempty" doc:"Region (default: $AWS_REGION)."`
	PathStyle bool   `json:"path_style" default:"false" doc:"Use path-style bucket addressing (MinIO, versitygw, Ceph)."`
}

// Routing is what the gateway needs to route to the student.
type Routing struct {
	ComplexityBand  []int   `json:"complexity_band" default:"1,2" range:"[1,5]" doc:"Request complexity scores (1-5) the student serves."`
	TargetPrecision float64 `json:"target_precision" default:"0.95" range:"(0,1]" doc:"Precision the confidence threshold is calibrated to on the val split; below it the gateway escalates."`
}

// Duration is a time.Duration written as text ("60s") in recipes and manifests.
type Duration time.Duration

// Std returns the standard library duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
