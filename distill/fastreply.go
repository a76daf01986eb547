package distill

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fastReply decodes a chat completion reply in one pass, extracting only
// what OpenAIClient.Complete uses, with far fewer allocations than
// encoding/json. It returns ok=false for anything it is not sure to decode
// exactly as the encoding/json path would (malformed JSON, a type the wire
// struct would reject, null or array content, several choices, duplicate or
// case-folded keys, escaped or non-ASCII keys, deep nesting, bytes out of
// range...): the caller then decodes with encoding/json, which gives the
// answer or the proper error. Latency and Rate are left zero.
func fastReply(body []byte) (Response, bool) {
	s := replyScanner{b: body}
	var r Response
	if !s.reply(&r) {
		return Response{}, false
	}
	s.ws()
	if s.i != len(s.b) {
		return Response{}, false
	}
	return r, true
}

// maxSkipDepth bounds the nesting of skipped values; deeper input goes to
// encoding/json (whose own limit is 10000).
const maxSkipDepth = 1000

// The members of each wire struct, to refuse keys that encoding/json would
// match case-insensitively.
var (
	replyKeys   = []string{"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
	choiceKeys  = []string{"index", "message", "logprobs", "finish_reason"}
	messageKeys = []string{"role", "content", "name", "tool_calls", "tool_call_id"}
	lpKeys      = []string{"content"}
	tokenKeys   = []string{"token", "logprob", "bytes", "top_logprobs"}
	topKeys     = []string{"token", "logprob", "bytes"}
	usageKeys   = []string{"prompt_tokens", "completion_tokens", "total_tokens"}
)

type replyScanner struct {
	b     []byte
	i     int
	depth int
	bytes []byte       // arena the token bytes are carved from
	tops  []TopLogprob // scratch for one token's alternatives
}

// ws skips JSON whitespace.
func (s *replyScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *replyScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// null consumes a null when it comes next.
func (s *replyScanner) null() bool {
	if s.peek() == 'n' && s.lit("null") {
		return true
	}
	return false
}

// lit consumes the literal w.
func (s *replyScanner) lit(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// begin consumes c (after spaces).
func (s *replyScanner) begin(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// more reads the separator before member or element n of an object or an
// array closed by end: false at the end (or on a syntax error, with *ok
// cleared).
func (s *replyScanner) more(n int, end byte, ok *bool) bool {
	c := s.peek()
	if c == end {
		s.i++
		return false
	}
	if n > 0 {
		if c != ',' {
			*ok = false
			return false
		}
		s.i++
	}
	return true
}

// key reads a member name and its colon. Only plain ASCII names without
// escapes are accepted, and a name that is not one of known but that
// encoding/json would match to one of them case-insensitively is refused.
// seen tracks the known names already met, to refuse duplicates; the
// index of the name in known is returned, -1 for an unknown name.
func (s *replyScanner) key(known []string, seen *uint32) (int, bool) {
	if s.peek() != '"' {
		return 0, false
	}
	start := s.i + 1
	i := start
	for ; i < len(s.b) && s.b[i] != '"'; i++ {
		if c := s.b[i]; c == '\\' || c < 0x20 || c >= 0x80 {
			return 0, false
		}
	}
	if i == len(s.b) {
		return 0, false
	}
	k := s.b[start:i]
	s.i = i + 1
	if !s.begin(':') {
		return 0, false
	}
	for j, name := range known {
		if string(k) == name {
			if *seen&(1<<j) != 0 {
				return 0, false
			}
			*seen |= 1 << j
			return j, true
		}
	}
	for _, name := range known {
		if len(k) == len(name) && strings.EqualFold(string(k), name) {
			return 0, false
		}
	}
	return -1, true
}

// str reads a string or null (which gives "").
func (s *replyScanner) str() (string, bool) {
	switch s.peek() {
	case 'n':
		return "", s.lit("null")
	case '"':
	default:
		return "", false
	}
	start := s.i
	high := false
	for i := start + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			raw := s.b[start+1 : i]
			if high && !utf8.Valid(raw) {
				return s.slowStr(start, i+1) // invalid UTF-8 becomes U+FFFD
			}
			return string(raw), true
		case c == '\\':
			if !s.skipStr() {
				return "", false
			}
			return s.slowStr(start, s.i)
		case c < 0x20:
			return "", false
		case c >= 0x80:
			high = true
		}
	}
	return "", false
}

// slowStr decodes the string b[start:end] exactly as encoding/json does.
func (s *replyScanner) slowStr(start, end int) (string, bool) {
	var v string
	if err := json.Unmarshal(s.b[start:end], &v); err != nil {
		return "", false
	}
	return v, true
}

// skipStr checks and skips a string.
func (s *replyScanner) skipStr() bool {
	if s.peek() != '"' {
		return false
	}
	for i := s.i + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return true
		case c == '\\':
			i++
			if i == len(s.b) {
				return false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number checks a number's JSON syntax and returns its text.
func (s *replyScanner) number() ([]byte, bool) {
	s.ws()
	b, start, i := s.b, s.i, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// float reads a float64 or null (0).
func (s *replyScanner) float() (float64, bool) {
	if s.null() {
		return 0, true
	}
	n, ok := s.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil
}

// int reads an integer of bits bits, as encoding/json would into an int
// type, or null (0).
func (s *replyScanner) int(bits int) (int64, bool) {
	if s.null() {
		return 0, true
	}
	n, ok := s.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, bits)
	return v, err == nil
}

// skip checks and skips any value.
func (s *replyScanner) skip() bool {
	switch c := s.peek(); c {
	case '"':
		return s.skipStr()
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	case '{', '[':
		if s.depth++; s.depth > maxSkipDepth {
			return false
		}
		s.i++
		ok := true
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		for n := 0; s.more(n, end, &ok); n++ {
			if c == '{' && !(s.skipStr() && s.begin(':')) {
				return false
			}
			if !s.skip() {
				return false
			}
		}
		s.depth--
		return ok
	default:
		_, ok := s.number()
		return ok
	}
}

// skipString checks a string or null.
func (s *replyScanner) skipString() bool {
	if s.null() {
		return true
	}
	return s.skipStr()
}

// object reads a JSON object whose members are named in known, calling
// field with each member's index in known (or an index past it for other
// members, which field must skip). It returns the members seen, as bits.
func (s *replyScanner) object(known []string, field func(k int) bool) (uint32, bool) {
	if !s.begin('{') {
		return 0, false
	}
	var seen uint32
	ok := true
	for n := 0; s.more(n, '}', &ok); n++ {
		k, good := s.key(known, &seen)
		if !good || !field(k) {
			return 0, false
		}
	}
	return seen, ok
}

// reply reads the top-level object.
func (s *replyScanner) reply(r *Response) bool {
	seen, ok := s.object(replyKeys, func(k int) (good bool) {
		switch k {
		case 0, 1, 6: // id, object, system_fingerprint
			return s.skipString()
		case 2: // created
			_, good = s.int(64)
			return good
		case 3:
			r.Model, good = s.str()
			return good
		case 4:
			return s.choices(r)
		case 5:
			return s.usage(r)
		}
		return s.skip()
	})
	return ok && seen&(1<<4) != 0
}

// usage reads the token counts; null leaves them 0.
func (s *replyScanner) usage(r *Response) bool {
	if s.null() {
		return true
	}
	_, ok := s.object(usageKeys, func(k int) bool {
		var v int64
		good := true
		switch k {
		case 0:
			v, good = s.int(strconv.IntSize)
			r.InputTokens = int(v)
		case 1:
			v, good = s.int(strconv.IntSize)
			r.OutputTokens = int(v)
		case 2:
			_, good = s.int(strconv.IntSize)
		default:
			good = s.skip()
		}
		return good
	})
	return ok
}

// choices reads an array of exactly one choice (null, empty and several
// choices go to encoding/json).
func (s *replyScanner) choices(r *Response) bool {
	return s.begin('[') && s.choice(r) && s.begin(']')
}

func (s *replyScanner) choice(r *Response) bool {
	seen, ok := s.object(choiceKeys, func(k int) (good bool) {
		switch k {
		case 0: // index
			_, good = s.int(strconv.IntSize)
			return good
		case 1:
			return s.message(r)
		case 2:
			return s.logprobs(r)
		case 3:
			r.FinishReason, good = s.str()
			return good
		}
		return s.skip()
	})
	return ok && seen&(1<<1) != 0
}

// message reads a message whose content is a string.
func (s *replyScanner) message(r *Response) bool {
	seen, ok := s.object(messageKeys, func(k int) (good bool) {
		switch k {
		case 0, 2, 4: // role, name, tool_call_id
			return s.skipString()
		case 1:
			if s.peek() != '"' {
				return false // null, parts, or a type error
			}
			r.Text, good = s.str()
			return good
		}
		return s.skip() // tool_calls (raw) and unknown members
	})
	return ok && seen&(1<<1) != 0
}

func (s *replyScanner) logprobs(r *Response) bool {
	if s.null() {
		return true
	}
	_, ok := s.object(lpKeys, func(k int) bool {
		if k == 0 {
			return s.tokens(r)
		}
		return s.skip()
	})
	return ok
}

// tokens reads logprobs.content: null leaves Tokens nil, an array (even
// empty) makes it non-nil, as openAITokens does.
func (s *replyScanner) tokens(r *Response) bool {
	if s.null() {
		return true
	}
	if !s.begin('[') {
		return false
	}
	r.Tokens = make([]TokenLogprob, 0, 16)
	ok := true
	for n := 0; s.more(n, ']', &ok); n++ {
		var t TokenLogprob
		if !s.token(&t) {
			return false
		}
		r.Tokens = append(r.Tokens, t)
	}
	return ok
}

func (s *replyScanner) token(t *TokenLogprob) bool {
	_, ok := s.object(tokenKeys, func(k int) (good bool) { // null elements fail too
		switch k {
		case 0:
			t.Token, good = s.str()
		case 1:
			t.Logprob, good = s.float()
		case 2:
			t.Bytes, good = s.byteArray()
		case 3:
			t.Top, good = s.topLogprobs()
		default:
			good = s.skip()
		}
		return good
	})
	return ok
}

// topLogprobs reads the alternatives; none gives nil, as openAITokens does.
func (s *replyScanner) topLogprobs() ([]TopLogprob, bool) {
	if s.null() {
		return nil, true
	}
	if !s.begin('[') {
		return nil, false
	}
	s.tops = s.tops[:0]
	ok := true
	for n := 0; s.more(n, ']', &ok); n++ {
		var a TopLogprob
		if !s.top(&a) {
			return nil, false
		}
		s.tops = append(s.tops, a)
	}
	if !ok || len(s.tops) == 0 {
		return nil, ok
	}
	return append([]TopLogprob(nil), s.tops...), true
}

func (s *replyScanner) top(a *TopLogprob) bool {
	_, ok := s.object(topKeys, func(k int) (good bool) {
		switch k {
		case 0:
			a.Token, good = s.str()
		case 1:
			a.Logprob, good = s.float()
		case 2:
			a.Bytes, good = s.byteArray()
		default:
			good = s.skip()
		}
		return good
	})
	return ok
}

// byteArray reads bytes: null gives nil, an array (even empty) a non-nil
// slice carved from the arena; values must be 0..255 (others, and null
// elements, go to encoding/json).
func (s *replyScanner) byteArray() ([]byte, bool) {
	if s.null() {
		return nil, true
	}
	if !s.begin('[') {
		return nil, false
	}
	if cap(s.bytes)-len(s.bytes) < 16 {
		s.bytes = make([]byte, 0, 1024)
	}
	start := len(s.bytes)
	ok := true
	for n := 0; s.more(n, ']', &ok); n++ {
		if s.null() {
			return nil, false
		}
		n, good := s.number()
		if !good {
			return nil, false
		}
		v := 0
		for _, d := range n {
			if d < '0' || d > '9' || v > 255 {
				v = -1 // sign, fraction, exponent or too long: ParseInt decides
				break
			}
			v = v*10 + int(d-'0')
		}
		if v < 0 {
			x, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil || x < 0 || x > 255 {
				return nil, false
			}
			v = int(x)
		}
		if v > 255 {
			return nil, false
		}
		s.bytes = append(s.bytes, byte(v))
	}
	if !ok {
		return nil, false
	}
	// Cap the slice so that appending to it never writes into the arena.
	return s.bytes[start:len(s.bytes):len(s.bytes)], true
}
