package recipes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options changes how a recipe is loaded.
type Options struct {
	// Set holds command-line overrides, each "key.path=value".
	Set []string
	// LookupEnv resolves ${VAR}; nil means the process environment.
	LookupEnv func(string) (string, bool)
}

// Load reads, expands, overrides and validates a recipe file. On invalid
// input it returns Errors listing every problem with file:line:col.
func Load(path string, opts Options) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	r, err := Parse(path, data, opts)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	r.Dir = abs
	return r, nil
}

// Parse is Load for recipe text already in memory; file names it in errors.
func Parse(file string, data []byte, opts Options) (*Recipe, error) {
	d := newDecoder(file)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{yamlSyntaxError(file, err)}
	}
	if len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}}}
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = osLookup
	}
	d.expandEnv(&doc, lookup)
	for _, s := range opts.Set {
		d.applySet(&doc, s)
	}
	r := &Recipe{File: file}
	applyDefaults(reflect.ValueOf(r).Elem())
	d.values[""] = doc.Content[0]
	d.decodeStruct(doc.Content[0], reflect.ValueOf(r).Elem(), "")
	validate(r, d)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	r.secrets = d.secrets
	return r, nil
}

// yamlSyntaxError turns yaml.v3's "yaml: line N: msg" into a located Error.
func yamlSyntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: file, Msg: "invalid YAML: " + msg}
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		e.Line, e.Col = line, 1
		e.Msg = "invalid YAML:" + strings.SplitN(msg, ":", 2)[1]
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		e.Msg = "invalid YAML: " + strings.Join(te.Errors, "; ")
	}
	return e
}

// Path resolves a path from the recipe against the recipe's folder.
func (r *Recipe) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || r.Dir == "" {
		return p
	}
	return filepath.Join(r.Dir, p)
}

// StoreURL is publish.store with a relative file:// folder resolved against
// the recipe's folder.
func (r *Recipe) StoreURL() string {
	s := r.Publish.Store
	if rest, ok := strings.CutPrefix(s, "file://"); ok {
		return "file://" + r.Path(rest)
	}
	if !strings.Contains(s, "://") {
		return "file://" + r.Path(s)
	}
	return s
}

// ModelName is the name the student is published under.
func (r *Recipe) ModelName() string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.Name
}
