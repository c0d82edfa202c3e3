package mta

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// go-smtp's report of its BDAT race becomes one line without a stack; any
// other panic it reports is logged as it came.
func TestSMTPLogBDATHangUp(t *testing.T) {
	race := "panic serving 127.0.0.1:50752: runtime error: invalid memory address or nil pointer dereference\n" +
		"goroutine 36775 [running]:\nruntime/debug.Stack()\n" +
		"github.com/emersion/go-smtp.(*Conn).handlePanic(0x3bd0cd01f550, {0x13d0640, 0x1dbb080}, 0x3bd0ccb905c7?)\n" +
		"github.com/emersion/go-smtp.(*Conn).handleBdat.func1.1()\npanic({0x13d0640?, 0x1dbb080?})\n" +
		"github.com/emersion/go-smtp.(*Conn).handleBdat.func1()\n"
	other := "panic serving 127.0.0.1:1: runtime error: index out of range\ngithub.com/emersion/go-smtp.(*Conn).handleMail()\n"
	var buf bytes.Buffer
	p := slogPrinter{slog.New(slog.NewTextHandler(&buf, nil))}
	p.Printf("%s", race)
	got := buf.String()
	if strings.Contains(got, "panic") || strings.Contains(got, "goroutine") || !strings.Contains(got, "remote=127.0.0.1:50752") {
		t.Errorf("the BDAT race logged as %q", got)
	}
	buf.Reset()
	p.Printf("%s", other)
	if got := buf.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "index out of range") {
		t.Errorf("another panic logged as %q", got)
	}
}
