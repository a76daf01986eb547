// Package openai holds the wire types of the OpenAI HTTP API that distillery
// speaks, both as a server (the gateway) and as a client of teacher providers
// (harvest): chat and legacy completions, the model list, the error shape,
// and server-sent events.
//
// Field names follow the OpenAI API reference exactly. Optional request
// numbers are pointers so that "absent" and "zero" stay distinct, which the
// server needs for validation and a proxy needs for faithful pass-through.
package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// Error types used in the "type" field of an error object.
const (
	InvalidRequestError = "invalid_request_error"
	ServerError         = "server_error"
	NotFoundError       = "not_found_error"
)

// ErrorResponse is the body of every error reply: {"error": {...}}.
type ErrorResponse struct {
	Error *APIError `json:"error"`
}

// APIError is OpenAI's error object. It implements error so that a client can
// return what a provider sent; Status carries the HTTP status it came with.
type APIError struct {
	Message string     `json:"message"`
	Type    string     `json:"type"`
	Param   NullString `json:"param"`
	Code    NullString `json:"code"`
	// Status is the HTTP status of the reply (not part of the JSON).
	Status int `json:"-"`
}

// Error formats the error as "status type (code): message".
func (e *APIError) Error() string {
	var b bytes.Buffer
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d ", e.Status)
	}
	if e.Type != "" {
		b.WriteString(e.Type)
	} else {
		b.WriteString("error")
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Param != "" {
		fmt.Fprintf(&b, " [param %s]", e.Param)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	return b.String()
}

// DecodeError reads an error reply body. Bodies that are not the OpenAI
// error shape (a proxy's HTML page, plain text) become an APIError whose
// message is the body itself, so a client always has something to report.
func DecodeError(status int, body []byte) *APIError {
	var r ErrorResponse
	if err := json.Unmarshal(body, &r); err == nil && r.Error != nil && r.Error.Message != "" {
		r.Error.Status = status
		return r.Error
	}
	msg := string(bytes.TrimSpace(body))
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{Message: msg, Status: status}
}

// WriteError writes an OpenAI-shaped error reply. Empty code and param are
// sent as null, as OpenAI does.
func WriteError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	body, _ := json.Marshal(ErrorResponse{Error: &APIError{
		Message: msg, Type: typ, Code: NullString(code), Param: NullString(param),
	}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// NullString is a string that is sent as null when empty. When decoding it
// accepts null, a string, or a number (kept as its literal text), because
// providers disagree on the type of fields like "code".
type NullString string

// MarshalJSON encodes "" as null.
func (s NullString) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(s))
}

// UnmarshalJSON accepts null, a string or a number.
func (s *NullString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = NullString(v)
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*s = NullString(b)
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: nullStringType}
}
