package smtpclient

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadReply feeds arbitrary server output to the reply reader: it must
// never panic, never keep more than its limits, and only ever return codes
// 200 to 599.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.example.com ESMTP\r\n",
		"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-LIMITS RCPTMAX=50\r\n250 8BITMIME\r\n",
		"550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 https://support.example/?p=NoSuchUser\r\n",
		"421 4.7.0 Try again later, closing connection.\n",
		"250\r\n",
		"354 \r\n",
		"2",
		"999 nine\r\n",
		"250-a\r\n251 b\r\n",
		"\r\n\r\n",
		"250 \xff\x00\x7f\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := replyReader{r: bufio.NewReaderSize(bytes.NewReader(data), 4096)}
		for range 50 {
			code, err := rr.read()
			if err != nil {
				return
			}
			if code < 200 || code > 599 {
				t.Fatalf("code %d from %q", code, data)
			}
			if len(rr.buf) > MaxReplyLines*(MaxReplyLineLen+1) {
				t.Fatalf("kept %d bytes", len(rr.buf))
			}
			r := rr.reply("EHLO", "h")
			if r.Code != code {
				t.Fatalf("typed reply code %d, read %d, from %q", r.Code, code, rr.buf)
			}
			parseEHLO(rr.buf)
		}
	})
}
