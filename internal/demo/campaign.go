package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sender is the campaign's envelope sender and From address.
const sender = "news@brand.demo"

// recipients returns the campaign's n recipients: spread over the providers
// by their shares (smooth weighted round-robin, so every provider gets its
// share from the first message on), each provider's domains in turn, and in
// every provider one unknown user per 16 recipients and one full mailbox per
// 20. The list is the same for the same n.
func recipients(n int) []string {
	out := make([]string, 0, n)
	current := make([]int, len(providers))
	count := make([]int, len(providers))
	for range n {
		best := 0
		for i, p := range providers {
			current[i] += p.Share
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= 100
		p := providers[best]
		k := count[best]
		count[best]++
		local := fmt.Sprintf("user%d", k+1)
		switch {
		case k%16 == 3:
			local = fmt.Sprintf("%s%d", unknownLocal, k+1)
		case k%20 == 9:
			local = fmt.Sprintf("%s%d", fullLocal, k+1)
		}
		out = append(out, local+"@"+p.Domains[k%len(p.Domains)])
	}
	return out
}

// sharesOf counts recipients per provider.
func sharesOf(rcpts []string) map[string]int {
	shares := map[string]int{}
	for _, r := range rcpts {
		shares[providerOf(r).Key]++
	}
	return shares
}

// injected is what kiln's submission port answered for one recipient.
type injected struct {
	rcpt  string
	ok    bool
	reply string // the refusal, when !ok
}

// message is the campaign's message to one recipient.
func message(rcpt string, n int, now time.Time) string {
	return "From: Brand News <" + sender + ">\r\n" +
		"To: <" + rcpt + ">\r\n" +
		"Subject: Spring sale: 20% off this week (kiln demo)\r\n" +
		"Date: " + now.Format(time.RFC1123Z) + "\r\n" +
		fmt.Sprintf("Message-ID: <demo.%d.%d@brand.demo>\r\n", now.UnixNano(), n) +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello,\r\n\r\nThis message was sent by kiln's demo to a simulated mailbox provider.\r\n"
}

// inject submits one message per recipient to kiln's SMTP submission port
// over conns connections, the way an application relaying through kiln would,
// and reports each recipient's answer through done as it comes. It fails
// only when it cannot talk to kiln at all.
func inject(ctx context.Context, addr string, rcpts []string, conns int, now func() time.Time, done func(injected)) error {
	work := make(chan int)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range min(conns, len(rcpts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Quit()
				}
			}()
			for i := range work {
				if c == nil {
					var err error
					if c, err = dial(addr); err != nil {
						errs <- err
						return
					}
				}
				r, err := send(c, rcpts[i], message(rcpts[i], i, now()))
				if err != nil {
					var se *smtp.SMTPError
					if !errors.As(err, &se) || se.Code == 421 {
						c.Close()
						c = nil
						errs <- fmt.Errorf("submitting to %s: %w", addr, err)
						return
					}
				}
				done(r)
			}
		}()
	}
	var err error
feed:
	for i := range rcpts {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func dial(addr string) (*smtp.Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to kiln's submission port %s: %w", addr, err)
	}
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 30 * time.Second
	if err := c.Hello("app.brand.demo"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO to %s: %w", addr, err)
	}
	return c, nil
}

// send runs one transaction. A refused recipient is a result, not an error;
// an error is a failure of the session (the caller drops the connection), or
// a refusal of the whole message.
func send(c *smtp.Client, rcpt, msg string) (injected, error) {
	if err := c.Mail(sender, nil); err != nil {
		return injected{}, err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			if rerr := c.Reset(); rerr != nil {
				return injected{}, rerr
			}
			return injected{rcpt: rcpt, reply: replyLine(se)}, nil
		}
		return injected{}, err
	}
	w, err := c.Data()
	if err != nil {
		return injected{}, err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return injected{}, err
	}
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code != 421 {
			return injected{rcpt: rcpt, reply: replyLine(se)}, nil
		}
		return injected{}, err
	}
	return injected{rcpt: rcpt, ok: true}, nil
}

func replyLine(se *smtp.SMTPError) string {
	s := fmt.Sprintf("%d", se.Code)
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		s += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return s + " " + strings.ReplaceAll(se.Message, "\n", " ")
}
