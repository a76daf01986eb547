package distill

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/distillery/distillery/openai"
)

// jsonReply is the encoding/json path of OpenAIClient.Complete (what runs
// when fastReply declines), without latency and rate.
func jsonReply(body []byte) (Response, error) {
	var out openai.ChatCompletionResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return Response{}, err
	}
	if len(out.Choices) == 0 {
		return Response{}, errors.New("no choices")
	}
	ch := out.Choices[0]
	resp := Response{
		Text:         ch.Message.Content.String(),
		Model:        out.Model,
		FinishReason: ch.FinishReason,
	}
	if out.Usage != nil {
		resp.InputTokens, resp.OutputTokens = out.Usage.PromptTokens, out.Usage.CompletionTokens
	}
	if ch.Logprobs != nil && ch.Logprobs.Content != nil {
		var err error
		resp.Tokens, err = openAITokens(ch.Logprobs.Content)
		if err != nil {
			return Response{}, err
		}
	}
	return resp, nil
}

const benchReply = `{"id":"chatcmpl-9xYz","object":"chat.completion","created":1718000000,"model":"gpt-4o-mini-2024-07-18",
"choices":[{"index":0,"message":{"role":"assistant","content":"The answer is","refusal":null},
"logprobs":{"content":[
 {"token":"The","logprob":-0.0012,"bytes":[84,104,101],"top_logprobs":[{"token":"The","logprob":-0.0012,"bytes":[84,104,101]},{"token":"A","logprob":-7.1,"bytes":[65]},{"token":"This","logprob":-8.25,"bytes":[84,104,105,115]},{"token":"It","logprob":-9.5,"bytes":[73,116]},{"token":"Answer","logprob":-10.75,"bytes":[65,110,115,119,101,114]}]},
 {"token":" answer","logprob":-0.31,"bytes":[32,97,110,115,119,101,114],"top_logprobs":[{"token":" answer","logprob":-0.31,"bytes":[32,97,110,115,119,101,114]},{"token":" result","logprob":-1.4,"bytes":[32,114,101,115,117,108,116]},{"token":" correct","logprob":-3.2,"bytes":[32,99,111,114,114,101,99,116]},{"token":" final","logprob":-4.05,"bytes":[32,102,105,110,97,108]},{"token":" best","logprob":-6.6,"bytes":[32,98,101,115,116]}]},
 {"token":" is","logprob":-1.9e-05,"bytes":[32,105,115],"top_logprobs":[{"token":" is","logprob":-1.9e-05,"bytes":[32,105,115]},{"token":":","logprob":-11.2,"bytes":[58]},{"token":" was","logprob":-12.0,"bytes":[32,119,97,115]},{"token":" here","logprob":-13.1,"bytes":[32,104,101,114,101]},{"token":",","logprob":-14.0,"bytes":[44]}]},
 {"token":"<|end|>","logprob":-0.5,"bytes":[60,124,101,110,100,124,62],"top_logprobs":[{"token":"<|end|>","logprob":-0.5,"bytes":[60,124,101,110,100,124,62]},{"token":".","logprob":-1.0,"bytes":[46]},{"token":"\n","logprob":-3.0,"bytes":[10]},{"token":" 4","logprob":-4.0,"bytes":[32,52]},{"token":"!","logprob":-5.0,"bytes":[33]}]}
],"refusal":null},"finish_reason":"stop"}],
"usage":{"prompt_tokens":31,"completion_tokens":4,"total_tokens":35,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},
"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}`

// replyCases are replies and whether fastReply must take them.
var replyCases = []struct {
	name string
	body string
	fast bool
}{
	{"openai logprobs", benchReply, true},
	{"client test answer", okAnswer, true},
	{"no logprobs", `{"id":"a","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, true},
	{"logprobs null", `{"model":"m","choices":[{"message":{"content":"x"},"logprobs":null,"finish_reason":"stop"}]}`, true},
	{"logprobs content null", `{"model":"m","choices":[{"message":{"content":"x"},"logprobs":{"content":null,"refusal":null}}]}`, true},
	{"logprobs content empty", `{"model":"m","choices":[{"message":{"content":""},"logprobs":{"content":[]}}]}`, true},
	{"logprobs empty object", `{"choices":[{"message":{"content":""},"logprobs":{}}]}`, true},
	{"usage missing", `{"model":"m","choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}`, true},
	{"usage null", `{"model":"m","choices":[{"message":{"content":"x"}}],"usage":null}`, true},
	{"nulls everywhere", `{"id":null,"object":null,"created":null,"model":null,"choices":[{"index":null,"message":{"role":null,"content":"x","name":null,"tool_calls":null,"tool_call_id":null},"finish_reason":null,"logprobs":{"content":[{"token":null,"logprob":null,"bytes":null,"top_logprobs":null}]}}],"usage":{"prompt_tokens":null,"completion_tokens":null,"total_tokens":null},"system_fingerprint":null}`, true},
	{"empty bytes and tops", `{"choices":[{"message":{"content":"x"},"logprobs":{"content":[{"token":"","logprob":-0,"bytes":[],"top_logprobs":[]},{"token":"a","logprob":0,"top_logprobs":[{"token":"a","logprob":0,"bytes":[]}]}]}}]}`, true},
	{"unicode", `{"model":"m","choices":[{"message":{"content":"héllo wörld — 日本語 🎉"},"logprobs":{"content":[{"token":"日","logprob":-0.5,"bytes":[230,151,165],"top_logprobs":[{"token":"\u65e5","logprob":-0.5,"bytes":[230,151,165]},{"token":"bytes:\\xe6","logprob":-2,"bytes":[230]}]}]}}]}`, true},
	{"escapes", `{"model":"m\"q\\\/","choices":[{"message":{"content":"line\n\ttab \"q\" \u00e9 \ud83c\udf89 \b\f\r \u0000"},"finish_reason":"st\u006fp","logprobs":{"content":[{"token":"\n","logprob":-1,"bytes":[10]}]}}]}`, true},
	{"invalid surrogates", `{"model":"\ud800x\udc00\ud83c","choices":[{"message":{"content":"a\uD800\uD800b\uDFFF"}}]}`, true},
	{"invalid utf8", "{\"model\":\"a\xffb\xc3\",\"choices\":[{\"message\":{\"content\":\"\xed\xa0\x80 ok \xe2\x82\"}}]}", true},
	{"extra fields", `{"x_int":1,"x_neg":-12.5e+3,"x_str":"a\"b\u1234","x_bool":true,"x_false":false,"x_null":null,"x_obj":{"a":[1,{"b":null}],"c":{}},"x_arr":[[],[[]],{},"s",0.5E-2],
"choices":[{"message":{"content":"x","refusal":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}],"annotations":[],"audio":null},"extra":{"deep":[[[{"x":1}]]]},
"logprobs":{"content":[{"token":"x","logprob":-1,"bytes":[120],"extra":[1,2],"top_logprobs":[{"token":"x","logprob":-1,"bytes":[120],"rank":1}]}],"refusal":[]},"finish_reason":"stop","stop_reason":null}],
"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":null},"model":"m","system_fingerprint":"fp"}`, true},
	{"vllm", `{"id":"chatcmpl-abc","object":"chat.completion","created":1718000000,"model":"Qwen/Qwen2.5-7B-Instruct",
"choices":[{"index":0,"message":{"role":"assistant","reasoning_content":null,"content":"Yes","tool_calls":[]},
"logprobs":{"content":[{"token":"Yes","logprob":-0.0001,"bytes":[89,101,115],"top_logprobs":[{"token":"Yes","logprob":-0.0001,"bytes":[89,101,115]},{"token":"No","logprob":-9.2,"bytes":[78,111]}]}]},
"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":20,"total_tokens":21,"completion_tokens":1,"prompt_tokens_details":null},"prompt_logprobs":null,"kv_transfer_params":null}`, true},
	{"whitespace", " \n\t{ \"model\" : \"m\" ,\r\n \"choices\" : [ { \"message\" : { \"content\" : \"x\" } , \"logprobs\" : { \"content\" : [ { \"token\" : \"x\" , \"bytes\" : [ 1 , 2 ] , \"top_logprobs\" : [ ] } ] } } ] } \n", true},
	{"big numbers", `{"created":9223372036854775807,"x":1e999999,"choices":[{"index":-0,"message":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-1.5e-320,"bytes":[0,255,-0]}]}}],"usage":{"prompt_tokens":-5,"completion_tokens":0}}`, true},

	// Declined: encoding/json decides.
	{"content null", `{"model":"m","choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]},"finish_reason":"tool_calls"}]}`, false},
	{"content parts", `{"model":"m","choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}`, false},
	{"content missing", `{"model":"m","choices":[{"message":{"role":"assistant"}}]}`, false},
	{"message missing", `{"model":"m","choices":[{"finish_reason":"stop"}]}`, false},
	{"two choices", `{"model":"m","choices":[{"message":{"content":"a"}},{"message":{"content":"b"}}]}`, false},
	{"no choices", `{"model":"m","choices":[]}`, false},
	{"choices null", `{"model":"m","choices":null}`, false},
	{"choices missing", `{"model":"m"}`, false},
	{"top null", `null`, false},
	{"not json", `<html>bad gateway</html>`, false},
	{"truncated", benchReply[:len(benchReply)/2], false},
	{"trailing", `{"choices":[{"message":{"content":"a"}}]} x`, false},
	{"trailing comma", `{"choices":[{"message":{"content":"a"}}],}`, false},
	{"byte out of range", `{"choices":[{"message":{"content":"a"},"logprobs":{"content":[{"token":"a","bytes":[256]}]}}]}`, false},
	{"byte float", `{"choices":[{"message":{"content":"a"},"logprobs":{"content":[{"token":"a","bytes":[1.0]}]}}]}`, false},
	{"byte null", `{"choices":[{"message":{"content":"a"},"logprobs":{"content":[{"token":"a","bytes":[null]}]}}]}`, false},
	{"token null", `{"choices":[{"message":{"content":"a"},"logprobs":{"content":[null]}}]}`, false},
	{"model number", `{"model":1,"choices":[{"message":{"content":"a"}}]}`, false},
	{"created float", `{"created":1.5,"choices":[{"message":{"content":"a"}}]}`, false},
	{"index string", `{"choices":[{"index":"0","message":{"content":"a"}}]}`, false},
	{"usage string", `{"choices":[{"message":{"content":"a"}}],"usage":{"total_tokens":"2"}}`, false},
	{"logprob string", `{"choices":[{"message":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":"-1"}]}}]}`, false},
	{"case folded key", `{"Model":"m","choices":[{"message":{"content":"a"}}]}`, false},
	{"escaped key", `{"mod\u0065l":"m","choices":[{"message":{"content":"a"}}]}`, false},
	{"duplicate key", `{"model":"a","model":"b","choices":[{"message":{"content":"a"}}]}`, false},
	{"non-ascii key", "{\"\xe2\x84\xaaey\":1,\"choices\":[{\"message\":{\"content\":\"a\"}}]}", false},
	{"bad escape", `{"x":"\q","choices":[{"message":{"content":"a"}}]}`, false},
	{"control char", "{\"choices\":[{\"message\":{\"content\":\"a\tb\"}}]}", false},
	{"leading zero", `{"x":01,"choices":[{"message":{"content":"a"}}]}`, false},
}

func TestFastReply(t *testing.T) {
	for _, tc := range replyCases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := fastReply([]byte(tc.body))
			if ok != tc.fast {
				t.Fatalf("fastReply ok = %v, want %v", ok, tc.fast)
			}
			if !ok {
				if !reflect.DeepEqual(got, Response{}) {
					t.Errorf("declined with a non-zero response %+v", got)
				}
				return
			}
			want, err := jsonReply([]byte(tc.body))
			if err != nil {
				t.Fatalf("encoding/json path fails on a reply fastReply took: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("fastReply:\n%#v\nencoding/json:\n%#v", got, want)
			}
		})
	}
}

// TestFastReplyComplete checks Complete end to end on every case: the fast
// path and the fallback give the encoding/json answer, or its error.
func TestFastReplyComplete(t *testing.T) {
	var body string
	srv := openAIServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ratelimit-remaining-requests", "7")
		writeJSON(w, 200, body)
	})
	c := newTestOpenAI(t, srv.URL, nil)
	for _, tc := range replyCases {
		t.Run(tc.name, func(t *testing.T) {
			body = tc.body
			got, err := c.Complete(context.Background(), Request{Messages: []Message{{"user", "hi"}}})
			want, wantErr := jsonReply([]byte(tc.body))
			if wantErr != nil {
				var e *Error
				if !errors.As(err, &e) || e.Kind != KindMalformed {
					t.Fatalf("Complete error = %v, want malformed (encoding/json: %v)", err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Latency <= 0 || got.Rate.RemainingRequests != 7 {
				t.Errorf("latency %v, rate %+v not set", got.Latency, got.Rate)
			}
			got.Latency, got.Rate = 0, RateInfo{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Complete:\n%#v\nencoding/json:\n%#v", got, want)
			}
		})
	}
}

func TestFastReplyDeepNesting(t *testing.T) {
	deep := `{"x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `,"choices":[{"message":{"content":"a"}}]}`
	if _, ok := fastReply([]byte(deep)); ok {
		t.Error("fastReply took a reply nested past its limit")
	}
	ok2 := `{"x":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `,"choices":[{"message":{"content":"a"}}]}`
	if r, ok := fastReply([]byte(ok2)); !ok || r.Text != "a" {
		t.Errorf("fastReply(500 deep) = %+v, %v", r, ok)
	}
}

// TestFastReplyBytesIsolated checks that appending to one token's bytes
// does not overwrite another's (they share an arena).
func TestFastReplyBytesIsolated(t *testing.T) {
	r, ok := fastReply([]byte(benchReply))
	if !ok {
		t.Fatal("declined")
	}
	_ = append(r.Tokens[0].Bytes, 'X', 'X', 'X')
	_ = append(r.Tokens[0].Top[0].Bytes, 'Y')
	want, _ := jsonReply([]byte(benchReply))
	if !reflect.DeepEqual(r, want) {
		t.Error("appending to bytes changed another token")
	}
}

func FuzzFastReply(f *testing.F) {
	for _, tc := range replyCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := fastReply(body)
		if !ok {
			return
		}
		want, err := jsonReply(body)
		if err != nil {
			t.Fatalf("fastReply took a reply encoding/json rejects (%v): %q", err, body)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("mismatch on %q:\nfastReply:     %#v\nencoding/json: %#v", body, got, want)
		}
	})
}

func BenchmarkReplyDecode(b *testing.B) {
	body := []byte(benchReply)
	b.Run("fastReply", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, ok := fastReply(body); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := jsonReply(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
