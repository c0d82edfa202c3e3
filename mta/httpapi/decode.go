package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
)

// The request body is read in two steps, so that every error names its
// field exactly: the object's members as raw JSON first (syntax errors,
// unknown members), then each member by the rules of its own field.

// readObject reads r's body as one JSON object, no larger than limit bytes,
// into its members. It answers the error itself and returns false on failure.
func readObject(w http.ResponseWriter, r *http.Request, limit int64) (map[string]json.RawMessage, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, apiError{Code: "unsupported_media_type",
				Message: "the request body must be JSON (Content-Type: application/json)"})
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "too_large", Limit: limit,
				Message: "the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"})
			return nil, false
		}
		writeError(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "reading the request body failed"})
		return nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, apiError{Code: "malformed_json", Message: "the request body is empty: send a JSON object"})
		return nil, false
	}
	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&members); err != nil {
		writeError(w, http.StatusBadRequest, syntaxError(err))
		return nil, false
	}
	if members == nil {
		writeError(w, http.StatusBadRequest, apiError{Code: "invalid_type", Message: "the request body must be a JSON object, not null"})
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, apiError{Code: "malformed_json", Message: "the request body holds more than one JSON value"})
		return nil, false
	}
	return members, true
}

func syntaxError(err error) apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return apiError{Code: "malformed_json", Message: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
	case errors.As(err, &te):
		return apiError{Code: "invalid_type", Message: "the request body must be a JSON object, not " + jsonKind(te.Value)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiError{Code: "malformed_json", Message: "malformed JSON: the body ends in the middle of a value"}
	}
	return apiError{Code: "malformed_json", Message: "malformed JSON"}
}

// jsonKind names the kind of a JSON value as json.UnmarshalTypeError gives it
// ("number 1.5" -> "a number").
func jsonKind(v string) string {
	for _, k := range []string{"string", "number", "bool", "array", "object"} {
		if len(v) >= len(k) && v[:len(k)] == k {
			if k == "array" || k == "object" {
				return "an " + k
			}
			return "a " + k
		}
	}
	return v
}

// fields decodes an object's members one by one, remembering the first
// error. Members it was not asked about are unknown.
type fields struct {
	m    map[string]json.RawMessage
	seen map[string]bool
	err  *apiError
}

func newFields(m map[string]json.RawMessage) *fields {
	return &fields{m: m, seen: map[string]bool{}}
}

func (f *fields) fail(e apiError) {
	if f.err == nil {
		f.err = &e
	}
}

// raw returns the member name, if present and not null.
func (f *fields) raw(name string) (json.RawMessage, bool) {
	f.seen[name] = true
	v, ok := f.m[name]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

func (f *fields) has(name string) bool {
	_, ok := f.raw(name)
	return ok
}

func typeError(field, want string, v json.RawMessage) apiError {
	return apiError{Code: "invalid_type", Field: field, Message: field + " must be " + want + ", not " + kindOf(v)}
}

func kindOf(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "empty"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func (f *fields) string(name string) string {
	v, ok := f.raw(name)
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		f.fail(typeError(name, "a string", v))
	}
	return s
}

func (f *fields) int(name string) int {
	v, ok := f.raw(name)
	if !ok {
		return 0
	}
	var n int
	if json.Unmarshal(v, &n) != nil {
		f.fail(typeError(name, "an integer", v))
	}
	return n
}

func (f *fields) strings(name string) []string {
	v, ok := f.raw(name)
	if !ok {
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(v, &items) != nil {
		if kindOf(v) == "a string" {
			f.fail(typeError(name, "an array of strings (even for one)", v))
		} else {
			f.fail(typeError(name, "an array of strings", v))
		}
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		if json.Unmarshal(it, &out[i]) != nil {
			f.fail(typeError(fmt.Sprintf("%s[%d]", name, i), "a string", it))
		}
	}
	return out
}

// stringMap decodes an object of strings; keys keep the order they came in.
func (f *fields) stringMap(name string) ([]string, map[string]string) {
	v, ok := f.raw(name)
	if !ok {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		f.fail(typeError(name, "an object of strings", v))
		return nil, nil
	}
	var keys []string
	m := map[string]string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			f.fail(apiError{Code: "malformed_json", Field: name, Message: name + ": malformed JSON"})
			return nil, nil
		}
		k := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			f.fail(apiError{Code: "malformed_json", Field: name, Message: name + ": malformed JSON"})
			return nil, nil
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			f.fail(typeError(name+"."+k, "a string", raw))
			continue
		}
		if _, dup := m[k]; !dup {
			keys = append(keys, k)
		}
		m[k] = s
	}
	return keys, m
}

// unknown reports the first member no one asked about.
func (f *fields) unknown() {
	var names []string
	for k := range f.m {
		if !f.seen[k] {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return
	}
	first := names[0]
	for _, n := range names {
		first = min(first, n)
	}
	f.fail(apiError{Code: "unknown_field", Field: first, Message: "unknown field " + strconv.Quote(first)})
}

// decodeMembers reads a JSON object's members (for tests and tools).
func decodeMembers(s string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	err := json.Unmarshal([]byte(s), &m)
	return m, err
}
