package mta

import (
	"errors"
	"testing"
)

func TestNormalizeData(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"a\r\nb\r\n", "a\r\nb\r\n", nil},
		{"a\nb\n", "a\r\nb\r\n", nil},
		{"\n.\n", "\r\n.\r\n", nil},
		{"a\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", nil},
		{"a\r.\r\n", "", errBareCR},
		{"a\r", "", errBareCR},
		{"a\r\r\n", "", errBareCR},
		{"a\x00b\r\n", "", errNUL},
		{"", "", nil},
	} {
		got, err := normalizeData([]byte(tc.in))
		if !errors.Is(err, tc.err) || (err == nil && string(got) != tc.want) {
			t.Errorf("normalizeData(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestScanHeader(t *testing.T) {
	msg := "Received: x\r\nFrom: \"A\" <a@News.Example.com>\r\nSubject: hi\r\n folded\r\nMessage-ID:\r\n <id@x>\r\n\r\nFrom: not a header\r\n"
	h := scanHeader([]byte(msg))
	if len(h.from) != 1 || h.messageID != "<id@x>" || h.hasDate {
		t.Fatalf("got %+v", h)
	}
	if msg[h.end:] != "From: not a header\r\n" {
		t.Fatalf("body starts at %q", msg[h.end:])
	}
	if d, err := fromDomain(h.from[0]); err != nil || d != "news.example.com" {
		t.Fatalf("fromDomain = %q, %v", d, err)
	}
	two := scanHeader([]byte("From: a@x.example\r\nfrom: b@y.example\r\n\r\n"))
	if len(two.from) != 2 {
		t.Fatalf("two From fields counted as %d", len(two.from))
	}
	none := scanHeader([]byte("just a body line\r\n"))
	if none.end != 0 || len(none.from) != 0 {
		t.Fatalf("headerless message: %+v", none)
	}
}

func TestAddressChecks(t *testing.T) {
	for a, ok := range map[string]bool{
		"a@b.example": true, "first.last+tag@sub.example.com": true, "a@[192.0.2.1]": true,
		"": false, "a": false, "@b.example": false, "a@": false, "a@-b.example": false,
		"a b@c.example": false, "a@b..example": false,
	} {
		if validAddress(a) != ok {
			t.Errorf("validAddress(%q) = %v", a, !ok)
		}
	}
	if !inDomains("news.example.com", []string{"example.com"}) || inDomains("badexample.com", []string{"example.com"}) {
		t.Error("inDomains subdomain rule broken")
	}
}

func FuzzNormalizeData(f *testing.F) {
	for _, s := range []string{"a\r\n", "a\n.\n", "\r.\r", "\x00", "a\r\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := normalizeData(in)
		if err != nil {
			return
		}
		for i := 0; i < len(out); i++ {
			if out[i] == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF survives in %q", out)
			}
			if out[i] == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
				t.Fatalf("bare CR survives in %q", out)
			}
			if out[i] == 0 {
				t.Fatal("NUL survives")
			}
		}
	})
}
