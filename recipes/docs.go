package recipes

import (
	"fmt"
	"reflect"
	"strings"
)

// Reference renders the field reference in Markdown from the schema itself,
// so docs/recipe.md cannot drift from what validation accepts.
func Reference() string {
	var b strings.Builder
	b.WriteString("# Recipe reference\n\n")
	b.WriteString("<!-- Generated from recipes/schema.go by `go test ./recipes -run TestReference -update`. Do not edit. -->\n\n")
	b.WriteString("A recipe is a YAML file. Unknown keys, wrong types, out-of-range values and missing required fields\n")
	b.WriteString("are errors reported with `file:line:col`, all at once. Values may use `${VAR}` or `${VAR:-default}`\n")
	b.WriteString("(`$$` is a literal `$`); values taken from variables whose names contain KEY, SECRET, TOKEN or PASSWORD\n")
	b.WriteString("are redacted in run folders. Any key can be overridden with `--set section.key=value` (parsed as YAML).\n")
	b.WriteString("Relative paths resolve against the recipe's folder.\n")
	writeSection(&b, reflect.TypeOf(Recipe{}), "", "Top level")
	return b.String()
}

func writeSection(b *strings.Builder, t reflect.Type, path, title string) {
	fmt.Fprintf(b, "\n## %s\n\n", title)
	b.WriteString("| key | type | default | allowed | description |\n|---|---|---|---|---|\n")
	var subs []field
	for _, f := range fieldsOf(t) {
		ft := t.Field(f.index).Type
		key := "`" + joinPath(path, f.name) + "`"
		if len(f.aliases) > 0 {
			key += " (alias: " + strings.Join(f.aliases, ", ") + ")"
		}
		def := "—"
		switch {
		case f.required:
			def = "**required**"
		case f.hasDef && f.def != "":
			def = "`" + strings.ReplaceAll(f.def, "\n", `\n`) + "`"
		}
		allowed := ""
		switch {
		case f.enum != nil:
			allowed = "`" + strings.Join(nonEmpty(f.enum), "`, `") + "`"
		case f.rng != "":
			allowed = "`" + f.rng + "`"
		case f.pattern != "":
			allowed = f.pattern
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", key, typeName(ft), def, allowed, strings.ReplaceAll(f.doc, "|", `\|`))
		if et := elemStruct(ft); et != nil {
			subs = append(subs, f)
		}
	}
	for _, f := range subs {
		ft := t.Field(f.index).Type
		name := joinPath(path, f.name)
		if ft.Kind() == reflect.Slice {
			name += "[]"
		}
		writeSection(b, elemStruct(ft), name, "`"+name+"`")
	}
}

func elemStruct(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct {
		return t
	}
	return nil
}

func nonEmpty(list []string) []string {
	var out []string
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Struct:
		return "section"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Int:
		return "integer"
	}
	return t.Kind().String()
}
