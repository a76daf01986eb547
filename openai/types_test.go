package openai

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestContentForms(t *testing.T) {
	tests := []struct {
		in, text, out string
		parts         bool
		null          bool
		wantErr       bool
	}{
		{in: `"hi"`, text: "hi", out: `"hi"`},
		{in: `""`, text: "", out: `""`},
		{in: `null`, null: true, out: `null`},
		{in: `[{"type":"text","text":"a"},{"type":"text","text":"b"}]`, text: "a\nb", parts: true,
			out: `[{"type":"text","text":"a"},{"type":"text","text":"b"}]`},
		{in: `[{"type":"image_url","image_url":{"url":"http://x/y.png"}},{"type":"text","text":"c"}]`, text: "c", parts: true,
			out: `[{"type":"image_url","image_url":{"url":"http://x/y.png"}},{"type":"text","text":"c"}]`},
		{in: `[]`, text: "", parts: true, out: `[]`},
		{in: `5`, wantErr: true},
		{in: `{"type":"text"}`, wantErr: true},
		{in: `["a"]`, wantErr: true},
		{in: `[{"type":"text","text":5}]`, wantErr: true},
	}
	for _, tt := range tests {
		var c Content
		err := json.Unmarshal([]byte(tt.in), &c)
		if tt.wantErr {
			if err == nil {
				t.Errorf("%s: no error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if c.String() != tt.text || (c.Parts != nil) != tt.parts || c.Null != tt.null {
			t.Errorf("%s: got %+v", tt.in, c)
		}
		out, err := json.Marshal(c)
		if err != nil || string(out) != tt.out {
			t.Errorf("%s: marshal %s %v, want %s", tt.in, out, err, tt.out)
		}
	}
}

func TestContentTypeErrorNamesField(t *testing.T) {
	var r ChatCompletionRequest
	err := json.Unmarshal([]byte(`{"model":"m","messages":[{"role":"user","content":5}]}`), &r)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field != "messages.content" || DescribeType(te.Type) != "a string or an array of content parts" {
		t.Fatalf("err %#v", err)
	}
}

func TestStringOrArray(t *testing.T) {
	tests := []struct {
		in   string
		want StringOrArray
		out  string
		err  bool
	}{
		{in: `"a"`, want: StringOrArray{"a"}, out: `"a"`},
		{in: `["a","b"]`, want: StringOrArray{"a", "b"}, out: `["a","b"]`},
		{in: `[]`, want: StringOrArray{}, out: `[]`},
		{in: `null`, want: nil, out: `null`},
		{in: `[1]`, err: true},
		{in: `{}`, err: true},
		{in: `3`, err: true},
	}
	for _, tt := range tests {
		var s StringOrArray
		err := json.Unmarshal([]byte(tt.in), &s)
		if tt.err {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) {
				t.Errorf("%s: err %v, want a type error", tt.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(s, tt.want) {
			t.Errorf("%s: got %#v, %v", tt.in, s, err)
		}
		if out, _ := json.Marshal(s); string(out) != tt.out {
			t.Errorf("%s: marshal %s, want %s", tt.in, out, tt.out)
		}
	}
}

func TestChatRequestKeepsUnknownFields(t *testing.T) {
	in := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],` +
		`"stop":"x","top_logprobs":2,"logprobs":true,"tools":[{"type":"function"}],` +
		`"reasoning_effort":"low","metadata":{"k":"v"}}`
	var r ChatCompletionRequest
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Model != "m" || *r.TopLogprobs != 2 || !r.Logprobs || r.Stop[0] != "x" || string(r.Tools) != `[{"type":"function"}]` {
		t.Fatalf("decoded %+v", r)
	}
	if len(r.Extra) != 2 || string(r.Extra["reasoning_effort"]) != `"low"` {
		t.Fatalf("extra %v", r.Extra)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal([]byte(in), &a)
	json.Unmarshal(out, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip:\n in %s\nout %s", in, out)
	}
}

func TestCompletionRequestRoundTrip(t *testing.T) {
	in := `{"model":"m","prompt":["a","b"],"logprobs":0,"echo":false,"max_tokens":3,"frob":[1,2]}`
	var r CompletionRequest
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Logprobs == nil || *r.Logprobs != 0 || len(r.Prompt) != 2 || string(r.Extra["frob"]) != `[1,2]` {
		t.Fatalf("decoded %+v", r)
	}
	out, _ := json.Marshal(r)
	want := `{"model":"m","prompt":["a","b"],"max_tokens":3,"logprobs":0,"frob":[1,2]}`
	if string(out) != want {
		t.Fatalf("got %s, want %s", out, want)
	}
}

func TestWireShapes(t *testing.T) {
	content := "hi"
	chunk := ChatCompletionChunk{ID: "c", Object: ObjectChatCompletionChunk, Created: 1, Model: "m",
		Choices: []ChatChunkChoice{{Delta: ChatDelta{Role: RoleAssistant, Content: &content}}}}
	b, _ := json.Marshal(chunk)
	want := `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":null}]}`
	if string(b) != want {
		t.Errorf("chunk\n got %s\nwant %s", b, want)
	}
	lp := ChatLogprobs{Content: []TokenLogprob{{Token: "a", Logprob: -1, Bytes: []int{97}, TopLogprobs: []TopLogprob{}}}}
	b, _ = json.Marshal(lp)
	if want := `{"content":[{"token":"a","logprob":-1,"bytes":[97],"top_logprobs":[]}]}`; string(b) != want {
		t.Errorf("logprobs\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(ModelList{Object: ObjectList, Data: []Model{{ID: "m", Object: ObjectModel, Created: 2, OwnedBy: "o"}}})
	if want := `{"object":"list","data":[{"id":"m","object":"model","created":2,"owned_by":"o"}]}`; string(b) != want {
		t.Errorf("models\n got %s\nwant %s", b, want)
	}
}

func TestErrors(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, 404, InvalidRequestError, "model_not_found", "", "no such model")
	want := `{"error":{"message":"no such model","type":"invalid_request_error","param":null,"code":"model_not_found"}}` + "\n"
	if rec.Code != 404 || rec.Body.String() != want || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
	e := DecodeError(404, rec.Body.Bytes())
	if e.Code != "model_not_found" || e.Param != "" || e.Status != 404 {
		t.Fatalf("decoded %+v", e)
	}
	if got := e.Error(); got != "404 invalid_request_error (model_not_found): no such model" {
		t.Errorf("Error() = %q", got)
	}
	// Numeric codes (some providers) and non-JSON bodies.
	if e := DecodeError(400, []byte(`{"error":{"message":"m","code":400}}`)); e.Code != "400" {
		t.Errorf("numeric code: %+v", e)
	}
	if e := DecodeError(502, []byte("<html>bad gateway</html>")); e.Message != "<html>bad gateway</html>" {
		t.Errorf("html body: %+v", e)
	}
	if e := DecodeError(503, nil); e.Message != "Service Unavailable" {
		t.Errorf("empty body: %+v", e)
	}
}
