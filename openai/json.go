package openai

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// StringOrArray is a field that OpenAI accepts either as one string or as an
// array of strings ("stop", the legacy "prompt"). Both forms decode to a
// slice; a one-element slice is sent back as a plain string. An absent or
// null field decodes to nil, an empty array to a non-nil empty slice.
type StringOrArray []string

// MarshalJSON sends one string as a string and anything else as an array.
func (s StringOrArray) MarshalJSON() ([]byte, error) {
	switch {
	case s == nil:
		return []byte("null"), nil
	case len(s) == 1:
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// UnmarshalJSON accepts null, a string, or an array of strings.
func (s *StringOrArray) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = StringOrArray{v}
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		v := []string{}
		if err := json.Unmarshal(b, &v); err != nil {
			return &json.UnmarshalTypeError{Value: "array with a non-string element", Type: stringOrArrayType}
		}
		*s = v
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: stringOrArrayType}
}

var (
	stringOrArrayType = reflect.TypeFor[StringOrArray]()
	contentType       = reflect.TypeFor[Content]()
	nullStringType    = reflect.TypeFor[NullString]()
)

// DescribeType names the JSON a Go field type expects, for error messages
// such as "expected a number". It knows this package's union types.
func DescribeType(t reflect.Type) string {
	switch t {
	case stringOrArrayType:
		return "a string or an array of strings"
	case contentType:
		return "a string or an array of content parts"
	case nullStringType:
		return "a string"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a different type"
}

// jsonKind names the kind of a JSON value by its first byte.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// knownFields lists the JSON names of a struct's fields, lower-cased
// (encoding/json matches names case-insensitively).
func knownFields(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[strings.ToLower(name)] = true
	}
	return m
}

var (
	chatFields       = sync.OnceValue(func() map[string]bool { return knownFields(reflect.TypeFor[ChatCompletionRequest]()) })
	completionFields = sync.OnceValue(func() map[string]bool { return knownFields(reflect.TypeFor[CompletionRequest]()) })
)

// unknownFields returns the members of the JSON object b whose names are not
// in known, so that a proxy can forward parameters this package does not model.
func unknownFields(b []byte, known map[string]bool) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k := range all {
		if known[strings.ToLower(k)] {
			delete(all, k)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	return all, nil
}

// appendFields splices extra members into the encoded JSON object obj, in
// name order, skipping names the struct already encodes.
func appendFields(obj []byte, extra map[string]json.RawMessage, known map[string]bool) ([]byte, error) {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !known[strings.ToLower(k)] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return obj, nil
	}
	sort.Strings(keys)
	obj = bytes.TrimRight(obj, " \n")
	out := append([]byte(nil), obj[:len(obj)-1]...) // drop '}'
	for _, k := range keys {
		name, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		var v bytes.Buffer
		if err := json.Compact(&v, extra[k]); err != nil {
			return nil, err
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, name...)
		out = append(out, ':')
		out = append(out, v.Bytes()...)
	}
	return append(out, '}'), nil
}
