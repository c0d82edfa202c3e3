package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type buf struct{ bytes.Buffer }

func (*buf) Close() error { return nil }

func TestLogWritesOneJSONLinePerEvent(t *testing.T) {
	var b buf
	l := NewLog(&b, nil)
	var bus Bus
	bus.Subscribe(l)
	bus.Emit(Event{Time: time.Unix(0, 0).UTC(), Type: Delivered, ID: "abc", Recipient: "a@b.example", Code: 250, Reply: "250 2.0.0 <ok & fine>"})
	bus.Emit(Event{Type: Bounced, ID: "abc", Recipient: "c@d.example", Hard: true, Rule: "generic.userunknown"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), b.String())
	}
	var e Event
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != Delivered || e.Reply != "250 2.0.0 <ok & fine>" || e.Code != 250 {
		t.Errorf("decoded %+v", e)
	}
	if strings.Contains(lines[0], `\u0026`) {
		t.Errorf("HTML-escaped reply: %s", lines[0])
	}
}

func TestNilBusDrops(t *testing.T) {
	var b *Bus
	b.Emit(Event{Type: Received}) // must not panic
}
