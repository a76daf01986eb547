package recipes

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var durationType = reflect.TypeOf(Duration(0))

// decoder walks a YAML node tree alongside the schema's Go types, filling
// values and collecting every error with its position.
type decoder struct {
	file    string
	errs    Errors
	origin  map[*yaml.Node]string   // nodes that came from --set, with the flag text
	envVars map[*yaml.Node][]string // scalars that ${VAR} expansion filled
	values  map[string]*yaml.Node   // key path -> value node, for cross-field errors
	keys    map[string]*yaml.Node   // key path -> key node
	secrets map[string]string       // key path -> env var whose (secret) value it holds
	depth   int                     // nesting of decodeValue, bounded against alias cycles
	aliases int                     // aliases followed, bounded against alias bombs
}

const (
	maxDepth   = 32
	maxAliases = 1000
)

func newDecoder(file string) *decoder {
	return &decoder{
		file:    file,
		origin:  map[*yaml.Node]string{},
		envVars: map[*yaml.Node][]string{},
		values:  map[string]*yaml.Node{},
		keys:    map[string]*yaml.Node{},
		secrets: map[string]string{},
	}
}

// errAt records an error located at node n.
func (d *decoder) errAt(n *yaml.Node, path, msg, hint string) {
	e := &Error{File: d.file, Key: path, Msg: msg, Hint: hint}
	if src, ok := d.origin[n]; ok {
		e.File = src
	} else if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// errPath records a cross-field error located at the value (or, failing
// that, the closest enclosing key) of a dotted path. It stays quiet when the
// path already has an error, since its value may be a partial decode.
func (d *decoder) errPath(path, msg, hint string) {
	for _, e := range d.errs {
		if e.Key != "" && (strings.HasPrefix(path, e.Key) || strings.HasPrefix(e.Key, path)) {
			return
		}
	}
	for p := path; p != ""; p = parentPath(p) {
		if n := d.keys[p]; n != nil {
			if p == path {
				n = d.values[p]
			}
			d.errAt(n, path, msg, hint)
			return
		}
	}
	d.errAt(d.values[""], path, msg, hint)
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// field is one schema field with its parsed tags.
type field struct {
	index    int
	name     string
	aliases  []string
	required bool
	def      string
	hasDef   bool
	enum     []string
	rng      string
	pattern  string
	doc      string
}

func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := field{index: i, name: name, required: sf.Tag.Get("required") == "true",
			rng: sf.Tag.Get("range"), pattern: sf.Tag.Get("pattern"), doc: sf.Tag.Get("doc")}
		f.def, f.hasDef = sf.Tag.Lookup("default")
		if a := sf.Tag.Get("alias"); a != "" {
			f.aliases = strings.Split(a, ",")
		}
		if e, ok := sf.Tag.Lookup("enum"); ok {
			f.enum = strings.Split(e, "|")
		}
		fs = append(fs, f)
	}
	return fs
}

func findField(fs []field, key string) (field, bool) {
	for _, f := range fs {
		if f.name == key {
			return f, true
		}
		for _, a := range f.aliases {
			if a == key {
				return f, true
			}
		}
	}
	return field{}, false
}

func keyNames(fs []field) []string {
	var names []string
	for _, f := range fs {
		names = append(names, f.name)
		names = append(names, f.aliases...)
	}
	return names
}

// applyDefaults sets every field of a struct value to its default, recursing
// into nested sections.
func applyDefaults(v reflect.Value) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		if fv.Kind() == reflect.Struct {
			applyDefaults(fv)
			continue
		}
		if f.hasDef {
			if err := setFromString(fv, f.def); err != nil {
				panic(fmt.Sprintf("recipes: bad default %q for %s: %v", f.def, f.name, err))
			}
		}
	}
}

// setFromString parses a default tag value into v.
func setFromString(v reflect.Value, s string) error {
	if v.Kind() == reflect.Slice {
		if s == "" {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return nil
		}
		parts := strings.Split(s, ",")
		sl := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setFromString(sl.Index(i), p); err != nil {
				return err
			}
		}
		v.Set(sl)
		return nil
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		v.SetInt(int64(dur))
		return err
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(s)
		v.SetInt(int64(i))
		return err
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		v.SetFloat(f)
		return err
	default:
		return fmt.Errorf("unsupported kind %s", v.Kind())
	}
	return nil
}

// decodeStruct fills a struct from a mapping node.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fs := fieldsOf(v.Type())
	if n.Kind == yaml.ScalarNode && len(fs) > 0 && fs[0].required && v.Field(fs[0].index).Kind() == reflect.String {
		// Shorthand: a bare scalar fills the struct's first (required) field,
		// e.g. `source: data.jsonl` for `source: [{path: data.jsonl}]`.
		f := fs[0]
		d.decodeValue(n, v.Field(f.index), joinPath(path, f.name), f)
		return
	}
	if f, ok := findField(fs, "enabled"); ok && n.Kind == yaml.ScalarNode && (n.Value == "none" || n.Value == "false") {
		// Shorthand: `lora: none` switches an optional section off.
		v.Field(f.index).SetBool(false)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errAt(n, path, "expected a mapping of keys, got "+describe(n), "")
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		f, ok := findField(fs, k.Value)
		if !ok {
			hint := ""
			if s := suggest(k.Value, keyNames(fs)); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			} else if strings.Contains(strings.ToLower(k.Value), "key") || strings.Contains(strings.ToLower(k.Value), "secret") {
				hint = "secrets are never written in recipes: put the key in an environment variable and name it in api_key_env"
			}
			d.errAt(k, joinPath(path, k.Value), "unknown key", hint)
			continue
		}
		p := joinPath(path, f.name)
		if prev, dup := seen[f.name]; dup {
			d.errAt(k, p, fmt.Sprintf("duplicate key (first set at line %d)", prev.Line), "")
			continue
		}
		seen[f.name] = k
		d.keys[p], d.values[p] = k, val
		if val.Tag == "!!null" {
			continue // `key:` with no value keeps the default
		}
		d.decodeValue(val, v.Field(f.index), p, f)
	}
	for _, f := range fs {
		if f.required && seen[f.name] == nil {
			d.errAt(n, joinPath(path, f.name), "missing required field", "")
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("string %q", n.Value)
	case "!!int", "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	}
	return fmt.Sprintf("%q", n.Value)
}

// decodeValue fills v from n and checks the field's constraints.
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string, f field) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if d.aliases++; d.aliases > maxAliases {
			d.errAt(n, path, "too many YAML aliases", "")
			return
		}
		n = n.Alias
	}
	if d.depth++; d.depth > maxDepth {
		d.errAt(n, path, "nested too deeply (a YAML alias cycle?)", "")
		d.depth--
		return
	}
	defer func() { d.depth-- }()
	if vars := d.envVars[n]; len(vars) > 0 {
		for _, name := range vars {
			if isSecretName(name) {
				d.secrets[path] = name
			}
		}
	}
	switch {
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
		return
	case v.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path, f)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, path, "expected "+kindName(v.Type())+", got "+describe(n), "")
		return
	}
	if !d.decodeScalar(n, v, path) {
		return
	}
	d.check(n, v, path, f)
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, f field) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	sl := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		ev := sl.Index(i)
		if ev.Kind() == reflect.Struct {
			applyDefaults(ev)
		}
		p := fmt.Sprintf("%s[%d]", path, i)
		if n.Kind != yaml.SequenceNode {
			p = path
		}
		d.decodeValue(item, ev, p, f)
	}
	v.Set(sl)
}

func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like 30s"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice:
		return "a list"
	}
	return "a mapping of keys"
}

// decodeScalar converts one scalar; it reports false after recording an error.
func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) bool {
	tag := n.ShortTag()
	bad := func() bool {
		d.errAt(n, path, "expected "+kindName(v.Type())+", got "+describe(n), "")
		return false
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(n.Value)
		if tag != "!!str" || err != nil {
			return bad()
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		if tag != "!!str" && tag != "!!int" && tag != "!!float" {
			return bad()
		}
		if looksLikeSecret(n.Value) && len(d.envVars[n]) == 0 {
			d.errAt(n, path, "value looks like a literal API key or secret", "put it in an environment variable and name the variable (e.g. api_key_env: OPENAI_API_KEY)")
			return false
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			return bad()
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32*1e6 {
			return bad()
		}
		v.SetInt(int64(f))
	case v.Kind() == reflect.Float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil || math.IsNaN(f) {
			return bad()
		}
		v.SetFloat(f)
	default:
		return bad()
	}
	return true
}

// check applies enum, range and pattern constraints to a decoded scalar.
func (d *decoder) check(n *yaml.Node, v reflect.Value, path string, f field) {
	if f.enum != nil {
		s := fmt.Sprint(v.Interface())
		if !contains(f.enum, s) {
			hint := ""
			if sg := suggest(s, f.enum); sg != "" {
				hint = fmt.Sprintf("did you mean %q?", sg)
			}
			d.errAt(n, path, fmt.Sprintf("%q is not one of %s", s, enumList(f.enum)), hint)
			return
		}
	}
	if f.rng != "" {
		var x float64
		switch v.Kind() {
		case reflect.Int:
			x = float64(v.Int())
		case reflect.Float64:
			x = v.Float()
		default:
			if v.Type() == durationType {
				x = float64(v.Int())
			}
		}
		if ok, desc := inRange(x, f.rng); !ok {
			d.errAt(n, path, fmt.Sprintf("%s is out of range: must be %s", n.Value, desc), "")
			return
		}
	}
	if f.pattern != "" && v.Kind() == reflect.String && v.String() != "" {
		if msg := formats[f.pattern](v.String()); msg != "" {
			d.errAt(n, path, msg, "")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func enumList(enum []string) string {
	var shown []string
	for _, e := range enum {
		if e != "" {
			shown = append(shown, e)
		}
	}
	return strings.Join(shown, ", ")
}

// inRange checks x against an interval such as "[0,1)" or "(0,inf)".
func inRange(x float64, rng string) (bool, string) {
	lo, hi, _ := strings.Cut(rng[1:len(rng)-1], ",")
	loIncl, hiIncl := rng[0] == '[', rng[len(rng)-1] == ']'
	ok := true
	var parts []string
	if lo != "-inf" {
		l, _ := strconv.ParseFloat(lo, 64)
		if loIncl {
			ok = ok && x >= l
			parts = append(parts, ">= "+lo)
		} else {
			ok = ok && x > l
			parts = append(parts, "> "+lo)
		}
	}
	if hi != "inf" {
		h, _ := strconv.ParseFloat(hi, 64)
		if hiIncl {
			ok = ok && x <= h
			parts = append(parts, "<= "+hi)
		} else {
			ok = ok && x < h
			parts = append(parts, "< "+hi)
		}
	}
	return ok, strings.Join(parts, " and ")
}
