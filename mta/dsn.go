package mta

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"kiln/queue"
)

// sendNotice tells the envelope sender, in an RFC 3464 delivery status
// notification (an RFC 6522 multipart/report), which recipients failed for
// good and why, in the remote's own words. Notices go with the null sender,
// so a notice that fails is never answered by another (no bounce loops), and
// none is sent for mail that itself had the null sender or whose account
// turned notices off.
func (srv *Server) sendNotice(m *queue.Message, failed []int) {
	orig := m.Clone()
	if orig.From == "" || orig.Kind == queue.KindNotice || !orig.Notices {
		return
	}
	body, err := srv.store.ReadBody(orig, nil)
	if err != nil {
		body = nil
	}
	data := srv.buildNotice(orig, failed, headerSection(body, 64<<10))
	// Notices come From MAILER-DAEMON@hostname: sign them when a key
	// aligns with kiln's own name, so they are not spam-foldered themselves.
	if srv.signer != nil {
		if _, ok := srv.signer.Aligned(srv.cfg.Hostname); ok {
			if sig, err := srv.signer.Sign(data, srv.cfg.Hostname, srv.clk.Now()); err == nil {
				data = append(sig, data...)
			}
		}
	}
	n := &queue.Message{
		Kind:      queue.KindNotice,
		Account:   orig.Account,
		From:      "",
		Rcpts:     []queue.Rcpt{{Addr: orig.From}},
		MessageID: "",
	}
	hdr := scanHeader(data)
	n.MessageID = hdr.messageID
	reserved := srv.sched.reserve()
	if reserved {
		n.Leased = true
		n.Due = srv.clk.Now().Add(leaseTTL)
	}
	if err := srv.store.Enqueue(context.Background(), n, data); err != nil {
		if reserved {
			srv.sched.unreserve()
		}
		srv.log.Error("queueing a delivery status notification failed", "for", orig.ID, "err", err)
		return
	}
	srv.emitMessage(n, "received", "delivery status notification for "+orig.ID)
	if reserved {
		srv.sched.submit(n)
	} else {
		srv.sched.poke()
	}
}

func (srv *Server) buildNotice(m *queue.Message, failed []int, origHeader []byte) []byte {
	now := srv.clk.Now()
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "kiln-" + hex.EncodeToString(rb[:])
	host := srv.cfg.Hostname
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(&b, "To: <%s>\r\n", m.From)
	fmt.Fprintf(&b, "Subject: Undelivered Mail Returned to Sender\r\n")
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(rfc5322Date))
	fmt.Fprintf(&b, "Message-ID: <%s.notice@%s>\r\n", m.ID, host)
	fmt.Fprintf(&b, "Auto-Submitted: auto-replied\r\n") // RFC 3834 §5
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)

	fmt.Fprintf(&b, "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n", boundary)
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Description: Notification\r\n\r\n")
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", host)
	fmt.Fprintf(&b, "Your message could not be delivered to the recipients below.\r\n")
	fmt.Fprintf(&b, "The reason each one failed is given in the receiving server's own words.\r\n\r\n")
	for _, i := range failed {
		r := m.Rcpts[i]
		why := r.Line
		if r.State == queue.RcptExpired {
			why = "still failing after the message's maximum time in the queue; last reply: " + r.Line
		}
		fmt.Fprintf(&b, "<%s>: %s\r\n", r.Addr, wrapText(why, 76))
	}

	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", host)
	fmt.Fprintf(&b, "X-Kiln-Queue-ID: %s\r\n", m.ID)
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", m.Created.Format(rfc5322Date))
	for _, i := range failed {
		r := m.Rcpts[i]
		status := r.Enhanced
		switch {
		case r.State == queue.RcptExpired:
			status = "4.4.7" // RFC 3463: delivery time expired
		case status == "" && r.Code >= 500:
			status = "5.0.0"
		case status == "" || status[0] != '5':
			if r.State == queue.RcptBounced {
				status = "5.0.0"
			}
		}
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Addr)
		fmt.Fprintf(&b, "Action: failed\r\n")
		fmt.Fprintf(&b, "Status: %s\r\n", status)
		if r.Host != "" {
			fmt.Fprintf(&b, "Remote-MTA: dns; %s\r\n", r.Host)
		}
		if r.Line != "" {
			kind := "smtp"
			if r.Code == 0 {
				kind = "x-kiln"
			}
			fmt.Fprintf(&b, "Diagnostic-Code: %s; %s\r\n", kind, wrapText(r.Line, 76))
		}
		if !r.Updated.IsZero() {
			fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", r.Updated.Format(rfc5322Date))
		}
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\nContent-Description: Undelivered message headers\r\n\r\n", boundary)
	b.Write(origHeader)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

// headerSection returns the header of a message, at most max bytes (cut at a
// line end), ending with CRLF.
func headerSection(msg []byte, max int) []byte {
	h := scanHeader(msg)
	end := h.end
	if end > max {
		end = bytes.LastIndex(msg[:max], []byte("\r\n")) + 2
	}
	out := bytes.TrimRight(msg[:end], "\r\n")
	return append(append([]byte(nil), out...), '\r', '\n')
}

// wrapText folds a long line at spaces into continuation lines starting with
// a space, as header fields may be folded (RFC 5322 §2.2.3).
func wrapText(s string, width int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= width {
		return s
	}
	var b strings.Builder
	line := 0
	for i, w := range strings.Fields(s) {
		if i > 0 {
			if line+1+len(w) > width {
				b.WriteString("\r\n ")
				line = 1
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}
