package httpapi

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Whatever the body, sending answers with one of the API's statuses, and a
// message it accepts is well-formed MIME whose header holds only the fields
// kiln builds or the request named: nothing a value smuggled in.
func FuzzSend(f *testing.F) {
	f.Add(`{"from":"news@shop.example","to":["ann@example.net"],"subject":"hi","text":"body"}`)
	f.Add(`{"from":"Shöp <news@shop.example>","to":["a@x.net"],"cc":["b@x.net"],"html":"<p>x</p>","text":"é","headers":{"X-A":"b"}}`)
	f.Add(`{"from":"news@shop.example","to":["ann@example.net"],"raw":"From: news@shop.example\r\n\r\nx"}`)
	f.Add(`{"from":"news@shop.example","to":["ann@example.net"],"subject":"a\r\nBcc: x@y.z","text":"x"}`)
	f.Add(`{"from":"news@shop.example","to":["ann@example.net"],"subject":"=?utf-8?q?a=0D=0ABcc:_x?=","text":"x"}`)
	f.Add(`{"to":[1],"priority":"x"}`)
	f.Add(`[]`)
	w := newWorld(f)
	f.Fuzz(func(t *testing.T, body string) {
		w.t = t
		w.submit.got = nil
		r := w.do("POST", "/api/v1/messages", adminKey, body)
		if !slices.Contains([]int{202, 400, 403, 413, 415, 422, 503}, r.status) {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if r.status != 202 {
			r.apiErr(t)
			return
		}
		data := w.submit.last(t).Data
		if strings.Contains(body, `"raw"`) {
			return
		}
		e := parseMessage(t, data)
		allowed := map[string]bool{"from": true, "to": true, "cc": true, "reply-to": true, "subject": true, "date": true,
			"message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true}
		for k := range headerKeysOf(t, body) {
			allowed[k] = true
		}
		fields := e.Header.Fields()
		for fields.Next() {
			if !allowed[strings.ToLower(fields.Key())] {
				t.Fatalf("field %q in the message that the request did not name:\n%s", fields.Key(), data)
			}
		}
		head := data[:bytes.Index(data, []byte("\r\n\r\n"))]
		for _, c := range head {
			if c >= 0x80 || c == 0 {
				t.Fatalf("8-bit or NUL byte in the header:\n%q", head)
			}
		}
	})
}

// headerKeysOf returns the lower-cased names of the request's "headers".
func headerKeysOf(t *testing.T, body string) map[string]bool {
	members, err := decodeMembers(body)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := newFields(members).stringMap("headers")
	out := map[string]bool{}
	for _, k := range keys {
		out[strings.ToLower(k)] = true
	}
	return out
}
