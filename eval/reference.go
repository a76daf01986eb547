package eval

import (
	"fmt"
	"reflect"
	"strings"
)

// ReportReference renders the field reference of report.json in Markdown
// from the struct tags (eval/REPORT.md, kept in step by TestReportReference).
func ReportReference() string {
	var b strings.Builder
	b.WriteString("# report.json reference\n\n")
	b.WriteString("<!-- Generated from eval/*.go by `go test ./eval -run TestReportReference -update`. Do not edit. -->\n\n")
	b.WriteString(`The eval stage writes ` + "`report.json`" + ` (this schema), ` + "`report.md`" + ` (the same numbers as tables) and
` + "`report.html`" + ` (self-contained: inline CSS and SVG, no script, no external resource; plots in elements with the ids
` + "`gate`, `quality`, `confusion-matrix`, `reliability-diagram`, `loss-curve`, `cost-chart`" + `). Field names are stable;
a field that does not apply is ` + "`null`" + `, never absent. Probabilities and scores are in [0,1], times in milliseconds,
money in US dollars.

Parity: the student's and the teacher's metrics are measured against one reference, the gold labels (or texts)
when the data has them (` + "`reference: gold`" + `), else the teacher's own answers (` + "`reference: teacher`" + `; test examples
whose teacher answer names no label are skipped). Parity is student / teacher. Against its own answers the teacher
scores 1, and so it does when it is the gold source (` + "`teacher_kind: labels`" + `): parity is then the student's score.
`)
	writeRefSection(&b, reflect.TypeOf(Report{}), "", "Top level", map[reflect.Type]string{})
	return b.String()
}

func refJSONName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func refType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "bool"
	case reflect.Pointer:
		return refType(t.Elem()) + " or null"
	case reflect.Slice:
		return "[]" + refType(t.Elem())
	case reflect.Map:
		return "map[string]" + refType(t.Elem())
	case reflect.Struct:
		return "object"
	}
	return t.String()
}

// structOf is the struct type under pointers, slices and maps, or nil.
func structOf(t reflect.Type) (reflect.Type, string) {
	suffix := ""
	for {
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Slice:
			t, suffix = t.Elem(), suffix+"[]"
		case reflect.Map:
			t, suffix = t.Elem(), suffix+".<key>"
		case reflect.Struct:
			return t, suffix
		default:
			return nil, ""
		}
	}
}

func writeRefSection(b *strings.Builder, t reflect.Type, path, title string, done map[reflect.Type]string) {
	fmt.Fprintf(b, "\n## %s\n\n| key | type | description |\n|---|---|---|\n", title)
	type sub struct {
		t    reflect.Type
		path string
	}
	var subs []sub
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := refJSONName(f)
		if name == "" {
			continue
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		doc := strings.ReplaceAll(f.Tag.Get("doc"), "|", `\|`)
		if st, suffix := structOf(f.Type); st != nil {
			if prev, ok := done[st]; ok {
				doc += fmt.Sprintf(" Fields as `%s`.", prev)
			} else {
				done[st] = key + suffix
				subs = append(subs, sub{st, key + suffix})
			}
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", key, refType(f.Type), doc)
	}
	for _, s := range subs {
		writeRefSection(b, s.t, s.path, "`"+s.path+"`", done)
	}
}
