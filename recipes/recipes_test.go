package recipes

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

const minimal = `name: t
task: {kind: classification, labels: [a, b]}
data: {source: d.jsonl}
teacher: {model: m}
student: {base: s}
`

func noEnv(string) (string, bool) { return "", false }

func parse(t *testing.T, text string, set ...string) (*Recipe, Errors) {
	t.Helper()
	r, err := Parse("r.yaml", []byte(text), Options{Set: set, LookupEnv: noEnv})
	if err == nil {
		return r, nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want Errors: %v", err, err)
	}
	return nil, errs
}

func TestExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want at least 3 example recipes, found %d", len(files))
	}
	for _, f := range files {
		if _, err := Load(f, Options{LookupEnv: noEnv}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The acceptance case: a misspelt key, a string where a number belongs and
// a missing teacher.model, all reported at once with line:col.
func TestBadRecipeGolden(t *testing.T) {
	_, err := Load("testdata/bad.yaml", Options{LookupEnv: noEnv})
	if err == nil {
		t.Fatal("bad recipe accepted")
	}
	got := err.Error() + "\n"
	golden := "testdata/bad.golden"
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if got != string(want) {
		t.Errorf("errors differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
	for _, s := range []string{`testdata/bad.yaml:13:3: train.learning_rte: unknown key (did you mean "learning_rate"?)`,
		`testdata/bad.yaml:14:15: train.batch_size: expected an integer`, `teacher.model: missing required field`,
		`testdata/bad.yaml:9:16: teacher.temperature: expected a number`} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in\n%s", s, got)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, text string
		set        []string
		want       []string // substrings, one per expected error
	}{
		{"unknown key suggests", minimal + "lora: {rnak: 4}\n", nil, []string{`r.yaml:6:8: lora.rnak: unknown key (did you mean "rank"?)`}},
		{"unknown top-level key", minimal + "tarin: {}\n", nil, []string{`r.yaml:6:1: tarin: unknown key (did you mean "train"?)`}},
		{"unrelated key no hint", minimal + "zzzzzz: 1\n", nil, []string{"zzzzzz: unknown key"}},
		{"api key literal key", minimal + "train: {api_key: x}\n", nil, []string{"api_key_env"}},
		{"wrong type int", minimal + "train: {batch_size: 1.5}\n", nil, []string{"6:21: train.batch_size: expected an integer, got number 1.5"}},
		{"wrong type bool", minimal + "lora: {rslora: maybe}\n", nil, []string{`lora.rslora: expected true or false, got string "maybe"`}},
		{"mapping for scalar", minimal + "train: {lr: {a: 1}}\n", nil, []string{"train.learning_rate: expected a number, got a mapping"}},
		{"list for section", minimal + "train: [1]\n", nil, []string{"train: expected a mapping of keys, got a list"}},
		{"enum", "name: t\ntask: {kind: clasification, labels: [a, b]}\ndata: {source: d}\nteacher: {model: m}\nstudent: {base: s}\n", nil,
			[]string{`r.yaml:2:14: task.kind: "clasification" is not one of classification, generation, lm (did you mean "classification"?)`}},
		{"range", minimal + "lora: {dropout: 1}\n", nil, []string{"lora.dropout: 1 is out of range: must be >= 0 and < 1"}},
		{"range top_logprobs", minimal + "teacher2: 1\n", nil, []string{`did you mean "teacher"?`}},
		{"duration", minimal + "train: {}\n", []string{"teacher.timeout=5"}, []string{"--set teacher.timeout=5: teacher.timeout: expected a duration like 30s"}},
		{"duplicate key", minimal + "train: {lr: 0.1, learning_rate: 0.2}\n", nil, []string{"train.learning_rate: duplicate key"}},
		{"missing required", "name: t\ntask: {kind: generation}\ndata: {source: d}\nstudent: {base: s}\n", nil, []string{"r.yaml:1:1: teacher: missing required field"}},
		{"lm needs no teacher but no labels", "name: t\ntask: {kind: lm, labels: [a, b]}\ndata: {source: d}\nstudent: {base: s}\n", nil, []string{"task.labels: labels are only for classification tasks"}},
		{"lora none is the only shorthand", minimal + "lora: all\n", nil, []string{"lora: expected a mapping of keys"}},
		{"missing nested required", "name: t\ntask: {kind: generation}\ndata: {}\nteacher: {model: m}\nstudent: {base: s}\n", nil, []string{"r.yaml:3:7: data.source: missing required field"}},
		{"labels needed", "name: t\ntask: {kind: classification}\ndata: {source: d}\nteacher: {model: m}\nstudent: {base: s}\n", nil, []string{"task.labels: classification needs at least two labels"}},
		{"split sum", strings.Replace(minimal, "data: {source: d.jsonl}", "data: {source: d, split: {train: 0.5, val: 0.1, test: 0.1}}", 1), nil, []string{"data.split: train + val + test must be 1"}},
		{"teacher labels needs label field", "name: t\ntask: {kind: classification, labels: [a, b]}\ndata: {source: d}\nteacher: {kind: labels}\nstudent: {base: s}\n", nil, []string{"data.label_field"}},
		{"bad name", strings.Replace(minimal, "name: t", "name: Bad Name", 1), nil, []string{"name: must be lower-case"}},
		{"env name not value", minimal + "train: {}\n", []string{"teacher.api_key_env=sk-abc"}, []string{"must be the NAME of an environment variable"}},
		{"literal secret", minimal + "publish: {name: sk-proj-abcdefghijklmnopqrstu}\n", nil, []string{"looks like a literal API key"}},
		{"store url", minimal + "publish: {store: s3://A}\n", nil, []string{"publish.store: s3:// needs a valid bucket name"}},
		{"unset env", minimal + "student2: ${NOPE}\n", nil, []string{"student2: unknown key", "environment variable NOPE is not set"}},
		{"yaml syntax", "name: [\n", nil, []string{"r.yaml:"}},
		{"set unknown key", minimal, []string{"train.learning_rte=1"}, []string{`--set train.learning_rte=1: train.learning_rte: unknown key (did you mean "learning_rate"?)`}},
		{"set bad value", minimal, []string{"train.lr=fast"}, []string{`--set train.lr=fast: train.learning_rate: expected a number, got string "fast"`}},
		{"set no equals", minimal, []string{"train.lr"}, []string{"--set train.lr: expected key.path=value"}},
		{"set into scalar", minimal, []string{"name.x=1"}, []string{"name: is not a section"}},
		{"band order", minimal + "routing: {complexity_band: [2, 1]}\n", nil, []string{"routing.complexity_band: scores must be increasing"}},
		{"band range", minimal + "routing: {complexity_band: [1, 6]}\n", nil, []string{"routing.complexity_band[1]: 6 is out of range"}},
		{"list enum", minimal + "lora: {target_modules: [q_proj, qv_proj]}\n", nil, []string{`lora.target_modules[1]: "qv_proj" is not one of`}},
		{"metric for task", minimal + "eval: {metric: rouge_l}\n", nil, []string{"eval.metric: rouge_l is a generation metric"}},
		{"alias cycle", minimal + "lora: {target_modules: &x [*x]}\n", nil, []string{"lora.target_modules[0]: expected a string, got a list"}},
		{"all errors at once", minimal + "train: {lr: x, batch_size: y, epochs: z}\n", nil, []string{"learning_rate", "batch_size", "epochs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parse(t, tc.text, tc.set...)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), errs)
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

func TestDefaultsAndShorthands(t *testing.T) {
	r, errs := parse(t, minimal+"lora: {target_modules: all-linear}\n")
	if errs != nil {
		t.Fatal(errs)
	}
	if r.Train.LearningRate != 2e-4 || r.Train.BatchSize != 16 || !r.Data.Dedupe || r.Teacher.Kind != "openai" {
		t.Errorf("defaults not applied: %+v", r.Train)
	}
	if r.Teacher.Timeout.Std().Seconds() != 60 {
		t.Errorf("timeout default = %v", r.Teacher.Timeout)
	}
	if len(r.Data.Source) != 1 || r.Data.Source[0].Path != "d.jsonl" || r.Data.Source[0].Format != "auto" {
		t.Errorf("source shorthand: %+v", r.Data.Source)
	}
	if len(r.LoRA.TargetModules) != 1 || r.LoRA.TargetModules[0] != "all-linear" {
		t.Errorf("scalar list shorthand: %v", r.LoRA.TargetModules)
	}
	if got := r.Routing.ComplexityBand; len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("list default: %v", got)
	}
	if !r.LoRA.Enabled {
		t.Error("lora is on by default")
	}
	r, errs = parse(t, minimal+"lora: none\n")
	if errs != nil || r.LoRA.Enabled {
		t.Errorf("lora: none keeps adapters on (%v)", errs)
	}
	r, errs = parse(t, "name: t\ntask: {kind: lm}\ndata: {source: d}\nstudent: {base: s}\nlora: none\n")
	if errs != nil || r.Task.Kind != "lm" {
		t.Errorf("an lm recipe needs no teacher: %v", errs)
	}
}

func TestOverrides(t *testing.T) {
	tests := []struct {
		set   []string
		check func(*Recipe) bool
	}{
		{[]string{"train.lr=1e-4"}, func(r *Recipe) bool { return r.Train.LearningRate == 1e-4 }},
		{[]string{"train.learning_rate=0.5"}, func(r *Recipe) bool { return r.Train.LearningRate == 0.5 }},
		{[]string{"lora.target_modules=[q_proj,v_proj,o_proj]"}, func(r *Recipe) bool { return len(r.LoRA.TargetModules) == 3 }},
		{[]string{"teacher.model=gpt-4o", "teacher.timeout=2m"}, func(r *Recipe) bool { return r.Teacher.Model == "gpt-4o" && r.Teacher.Timeout.Std().Minutes() == 2 }},
		{[]string{"quantize.method=rtn"}, func(r *Recipe) bool { return r.Quantize.Method == "rtn" }},
		{[]string{"train.loss.temperature=4"}, func(r *Recipe) bool { return r.Train.Loss.Temperature == 4 }},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.set, " "), func(t *testing.T) {
			// The file sets lr via its alias; overrides must replace it, not duplicate it.
			r, errs := parse(t, minimal+"train: {lr: 0.01}\n", tc.set...)
			if errs != nil {
				t.Fatal(errs)
			}
			if !tc.check(r) {
				t.Errorf("override not applied: %+v", r)
			}
		})
	}
}

func TestEnvExpansionAndRedaction(t *testing.T) {
	env := map[string]string{"LR": "1e-3", "MY_API_TOKEN": "tok-very-secret-value", "MODEL": "gpt-x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	text := minimal + "train:\n  lr: ${LR}\n  seed: ${SEED:-7}\npublish: {name: \"${MY_API_TOKEN}\"}\nteacher: {model: \"${MODEL}\"}\ndescription: cost $$5\n"
	text = strings.Replace(text, "teacher: {model: m}\n", "", 1)
	r, err := Parse("r.yaml", []byte(text), Options{LookupEnv: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if r.Train.LearningRate != 1e-3 || r.Train.Seed != 7 || r.Teacher.Model != "gpt-x" || r.Description != "cost $5" {
		t.Errorf("expansion wrong: lr=%v seed=%v model=%q desc=%q", r.Train.LearningRate, r.Train.Seed, r.Teacher.Model, r.Description)
	}
	red := string(r.Redacted())
	if strings.Contains(red, "tok-very-secret-value") {
		t.Fatalf("secret leaked into redacted recipe: %s", red)
	}
	if !strings.Contains(red, "[redacted: $MY_API_TOKEN]") || !strings.Contains(red, `"gpt-x"`) || !strings.Contains(red, `"timeout":"1m0s"`) {
		t.Errorf("redaction marker or plain value missing: %s", red)
	}
	if r.Hash() == "" || len(r.Hash()) != 64 {
		t.Errorf("hash = %q", r.Hash())
	}
}

func TestHashStable(t *testing.T) {
	a, _ := parse(t, minimal)
	b, _ := parse(t, "# comment\n"+minimal+"train: {lr: 2e-4}\n") // an explicit default changes nothing
	c, _ := parse(t, minimal, "train.lr=1e-3")
	if a.Hash() != b.Hash() {
		t.Error("equivalent recipes hash differently")
	}
	if a.Hash() == c.Hash() {
		t.Error("different recipes hash the same")
	}
}

func TestReference(t *testing.T) {
	const path = "../docs/recipe.md"
	got := Reference()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./recipes -run TestReference -update)", err)
	}
	if string(want) != got {
		t.Fatalf("%s is out of date with the schema: run go test ./recipes -run TestReference -update", path)
	}
	// Every field of every section must be documented.
	for _, key := range []string{"`train.learning_rate` (alias: lr)", "`teacher.api_key_env`", "`data.source[].split`", "`train.loss.beta`", "`publish.s3.path_style`"} {
		if !strings.Contains(got, key) {
			t.Errorf("reference lacks %s", key)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|  |") {
			t.Errorf("undocumented field: %s", line)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"examples/quickstart.yaml", "examples/support-intents.yaml", "testdata/bad.yaml"} {
		data, _ := os.ReadFile(p)
		f.Add(string(data), "train.lr=1e-4")
	}
	f.Add(minimal, "lora.rank=[1")
	f.Add("a: &x [*x]\n", "")
	f.Add(minimal+"lora: {target_modules: &x [*x]}\n", "")
	f.Fuzz(func(t *testing.T, text, set string) {
		var sets []string
		if set != "" {
			sets = []string{set}
		}
		r, err := Parse("f.yaml", []byte(text), Options{Set: sets, LookupEnv: noEnv})
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.File == "" || e.Msg == "" {
					t.Fatalf("error without location or message: %+v", e)
				}
			}
			return
		}
		if r.Name == "" || r.Hash() == "" {
			t.Fatal("accepted recipe without a name")
		}
	})
}
