// Package ci holds example CI workflows; its test checks their structure.
package ci

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// workflow is the part of a GitHub Actions workflow the test looks at.
type workflow struct {
	On   map[string]any `yaml:"on"`
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []step            `yaml:"steps"`
	} `yaml:"jobs"`
}

type step struct {
	Name string            `yaml:"name"`
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	Env  map[string]string `yaml:"env"`
	With map[string]any    `yaml:"with"`
}

var (
	// secretRef is a whole env value taken from one secret.
	secretRef = regexp.MustCompile(`^\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$`)
	// expr is any ${{ ... }} expression.
	expr = regexp.MustCompile(`\$\{\{[^}]*\}\}`)
)

// TestRetrainWorkflow: the nightly retrain example runs on a schedule (and
// by hand), builds with Go 1.26, runs `distillery run --incremental`, hands
// secrets over only as whole env values of that step (never inline in a
// script or in the job-wide env), passes the teacher key under the name the
// recipe's teacher.api_key_env reads, and uploads the eval report even
// when the run fails.
func TestRetrainWorkflow(t *testing.T) {
	raw, err := os.ReadFile("retrain.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		t.Fatal(err)
	}
	sched, _ := wf.On["schedule"].([]any)
	if len(sched) == 0 {
		t.Fatalf("on.schedule missing: on = %v", wf.On)
	}
	for _, s := range sched {
		cron, _ := s.(map[string]any)["cron"].(string)
		if len(strings.Fields(cron)) != 5 {
			t.Errorf("schedule entry %v: want a five-field cron", s)
		}
	}
	if _, ok := wf.On["workflow_dispatch"]; !ok {
		t.Error("on.workflow_dispatch missing")
	}
	job, ok := wf.Jobs["retrain"]
	if !ok || len(job.Steps) == 0 {
		t.Fatalf("job retrain missing or empty: %v", wf.Jobs)
	}
	for k, v := range job.Env {
		if strings.Contains(v, "secrets.") {
			t.Errorf("job env %s takes a secret (%q): pass secrets only to the step that needs them", k, v)
		}
	}

	var checkout, goSetup, build, upload bool
	var runStep *step
	for i, s := range job.Steps {
		switch {
		case strings.HasPrefix(s.Uses, "actions/checkout@"):
			checkout = true
		case strings.HasPrefix(s.Uses, "actions/setup-go@"):
			goSetup = s.With["go-version"] == "1.26"
		case strings.HasPrefix(s.Uses, "actions/upload-artifact@"):
			path, _ := s.With["path"].(string)
			upload = strings.Contains(path, "eval/report.") && strings.HasPrefix(s.If, "always()")
		}
		if strings.Contains(s.Run, "make build") {
			build = true
		}
		if strings.Contains(s.Run, "distillery run --incremental") {
			runStep = &job.Steps[i]
		}
		// Secrets: whole env values only; no expression inside a script
		// (the classic injection hole) and none in `with`.
		for k, v := range s.Env {
			if strings.Contains(v, "secrets.") && !secretRef.MatchString(v) {
				t.Errorf("step %q env %s = %q: a secret must be the whole value, ${{ secrets.NAME }}", s.Name, k, v)
			}
		}
		if m := expr.FindString(s.Run); m != "" {
			t.Errorf("step %q has %s inside its script: pass it through env", s.Name, m)
		}
		for k, v := range s.With {
			if str, _ := v.(string); strings.Contains(str, "secrets.") {
				t.Errorf("step %q with.%s takes a secret", s.Name, k)
			}
		}
	}
	if !checkout || !goSetup || !build || !upload {
		t.Errorf("checkout %v, setup-go 1.26 %v, make build %v, upload of eval/report.* if always() %v", checkout, goSetup, build, upload)
	}
	if runStep == nil {
		t.Fatal("no step runs `distillery run --incremental`")
	}
	for _, want := range []string{"bin/distillery run --incremental", "--progress json", "--set \"publish.store=$STORE\"", `exit "$code"`} {
		if !strings.Contains(runStep.Run, want) {
			t.Errorf("run step lacks %s:\n%s", want, runStep.Run)
		}
	}
	if !strings.HasPrefix(job.Env["STORE"], "${{ vars.") || !strings.Contains(job.Env["STORE"], "s3://") {
		t.Errorf("STORE = %q, want a repository variable with an s3:// default", job.Env["STORE"])
	}
	secrets := map[string]string{}
	for k, v := range runStep.Env {
		if m := secretRef.FindStringSubmatch(v); m != nil {
			secrets[k] = m[1]
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if secrets[k] == "" {
			t.Errorf("run step env %s is not a secret (env %v)", k, runStep.Env)
		}
	}

	// The teacher's key goes under the name the recipe reads.
	recipeRaw, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(job.Env["RECIPE"])))
	if err != nil {
		t.Fatalf("RECIPE %q: %v", job.Env["RECIPE"], err)
	}
	var recipe struct {
		Teacher struct {
			APIKeyEnv string `yaml:"api_key_env"`
		} `yaml:"teacher"`
	}
	if err := yaml.Unmarshal(recipeRaw, &recipe); err != nil {
		t.Fatal(err)
	}
	if k := recipe.Teacher.APIKeyEnv; k == "" || secrets[k] == "" {
		t.Errorf("the recipe reads the teacher key from %q, but the run step's secrets are %v", k, secrets)
	}

	// The exit codes are documented.
	for _, code := range []string{"#   0  ok", "#   1  failure", "#   2  invalid input", "#   3  quality gate failed"} {
		if !strings.Contains(string(raw), code) {
			t.Errorf("exit code comment %q missing", code)
		}
	}
}
