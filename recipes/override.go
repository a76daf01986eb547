package recipes

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// applySet applies one `--set key.path=value` override to the YAML tree
// before decoding, so an override is validated exactly like the file. The
// value is parsed as YAML: `--set train.lr=1e-4` is a number and
// `--set lora.target_modules=[q_proj,v_proj]` a list.
func (d *decoder) applySet(doc *yaml.Node, set string) {
	flag := "--set " + set
	key, raw, ok := strings.Cut(set, "=")
	if !ok || key == "" {
		d.errs = append(d.errs, &Error{File: flag, Msg: "expected key.path=value"})
		return
	}
	var vdoc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &vdoc); err != nil || len(vdoc.Content) == 0 {
		vdoc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: raw}}}
	}
	value := vdoc.Content[0]
	markOrigin(value, flag, d.origin)

	m := doc.Content[0]
	t := reflect.TypeOf(Recipe{})
	segs := strings.Split(key, ".")
	path := ""
	for i, seg := range segs {
		fs := fieldsOf(t)
		f, found := findField(fs, seg)
		if !found {
			hint := ""
			if s := suggest(seg, keyNames(fs)); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			d.errs = append(d.errs, &Error{File: flag, Key: joinPath(path, seg), Msg: "unknown key", Hint: hint})
			return
		}
		path = joinPath(path, f.name)
		names := append([]string{f.name}, f.aliases...)
		idx := -1
		for j := 0; j+1 < len(m.Content); j += 2 {
			if contains(names, m.Content[j].Value) {
				idx = j
			}
		}
		if i == len(segs)-1 {
			if idx >= 0 {
				m.Content[idx+1] = value
			} else {
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.name}
				d.origin[k] = flag
				m.Content = append(m.Content, k, value)
			}
			return
		}
		t = t.Field(f.index).Type
		if t.Kind() != reflect.Struct {
			d.errs = append(d.errs, &Error{File: flag, Key: path, Msg: "is not a section: cannot set " + strings.Join(segs[i+1:], ".") + " inside it"})
			return
		}
		if idx < 0 || m.Content[idx+1].Kind != yaml.MappingNode {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.name}
			sub := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			d.origin[k], d.origin[sub] = flag, flag
			if idx >= 0 {
				m.Content[idx+1] = sub
			} else {
				m.Content = append(m.Content, k, sub)
			}
			m = sub
		} else {
			m = m.Content[idx+1]
		}
	}
}

func markOrigin(n *yaml.Node, flag string, origin map[*yaml.Node]string) {
	origin[n] = flag
	for _, c := range n.Content {
		markOrigin(c, flag, origin)
	}
}
