package mta

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/policy"
	"kiln/policy/suppress"
)

// One-click unsubscribe (RFC 8058). For an account with unsubscribe = true,
// kiln adds to each single-recipient message without a List-Unsubscribe of
// its own, before signing it:
//
//	List-Unsubscribe: <https://.../unsubscribe/<token>>, <mailto:unsub-...@bounce domain>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// The link's token carries the account, the recipient and the message id,
// signed with an HMAC, so it works for as long as the secret stays the same,
// with no state on kiln's side; a forged token is refused. The mailto's local
// part has no room for all that (64 characters at most, and MTAs may fold its
// case): it names the message and the recipient like a VERP address, and is
// resolved through the queue or the event history.
//
// Only a POST unsubscribes (RFC 8058 §3.1): opening the link shows a button,
// so mail scanners that follow links change nothing. A second POST with the
// same token (a replay) finds the address already suppressed and changes
// nothing either.
type unsubscriber struct {
	base string // public base URL, without a trailing slash
	key  []byte
	mail *verp // the mailto form: VERP-style tokens under their own key
}

var unsubSecretKey = []byte("mta/unsubscribe-secret")

const unsubMailPrefix = "unsub-"

func newUnsubscriber(cfg Unsub, bounceDomain string, db *badger.DB) (*unsubscriber, error) {
	if cfg.URL == "" {
		return nil, nil
	}
	u := &unsubscriber{base: strings.TrimRight(cfg.URL, "/")}
	if cfg.Secret != "" {
		u.key = []byte(cfg.Secret)
	} else {
		err := db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(unsubSecretKey)
			if err == nil {
				u.key, err = item.ValueCopy(nil)
				return err
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			u.key = make([]byte, 32)
			rand.Read(u.key)
			return txn.Set(unsubSecretKey, u.key)
		})
		if err != nil {
			return nil, fmt.Errorf("unsubscribe secret: %w", err)
		}
	}
	if bounceDomain != "" {
		mk := hmac.New(sha256.New, u.key)
		mk.Write([]byte("mailto"))
		u.mail = &verp{domain: strings.ToLower(bounceDomain), key: mk.Sum(nil)}
	}
	return u, nil
}

// Unsub is the part of the config the unsubscriber needs.
type Unsub struct {
	URL    string
	Secret string
}

var b64 = base64.RawURLEncoding

func (u *unsubscriber) sign(payload []byte) string {
	m := hmac.New(sha256.New, u.key)
	m.Write(payload)
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(m.Sum(nil)[:16])
}

// token makes the link token for a recipient of a message of an account.
func (u *unsubscriber) token(account, rcpt, id string) string {
	return u.sign([]byte(account + "\x00" + strings.ToLower(rcpt) + "\x00" + id))
}

// parse checks a link token.
func (u *unsubscriber) parse(tok string) (account, rcpt, id string, ok bool) {
	p, mac, found := strings.Cut(tok, ".")
	if !found {
		return "", "", "", false
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return "", "", "", false
	}
	got, err := b64.DecodeString(mac)
	if err != nil {
		return "", "", "", false
	}
	m := hmac.New(sha256.New, u.key)
	m.Write(payload)
	if !hmac.Equal(got, m.Sum(nil)[:16]) {
		return "", "", "", false
	}
	parts := strings.Split(string(payload), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// headers returns the two header fields for one recipient.
func (u *unsubscriber) headers(account, rcpt, id string) string {
	link := "<" + u.base + "/unsubscribe/" + u.token(account, rcpt, id) + ">"
	if u.mail != nil {
		rp := u.mail.returnPath(id, rcpt)
		link += ",\r\n <mailto:" + unsubMailPrefix + strings.TrimPrefix(rp, "b-") + "?subject=unsubscribe>"
	}
	return "List-Unsubscribe: " + link + "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
}

// parseMail checks the local part of an unsubscribe mailto address.
func (u *unsubscriber) parseMail(addr string) (verpToken, bool) {
	if u == nil || u.mail == nil {
		return verpToken{}, false
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.HasPrefix(strings.ToLower(addr), unsubMailPrefix) {
		return verpToken{}, false
	}
	return u.mail.parse("b-" + addr[len(unsubMailPrefix):])
}

// unsubscribe suppresses addr for account and emits the event, once.
func (srv *Server) unsubscribe(account, addr, id, how string) {
	now := srv.clk.Now()
	if srv.suppress == nil {
		return
	}
	e, suppressed, changed, err := srv.suppress.Record(suppress.Result{
		Account: account, Address: addr, QueueID: id, Source: suppress.SourceUnsubscribe,
		Decision: policy.Decision{Reason: "feedback", Rule: "one-click-unsubscribe", Action: policy.ActionDelivered},
		Reply:    how,
	}, now)
	if err != nil {
		srv.log.Error("recording an unsubscribe failed", "err", err)
		return
	}
	if !suppressed || !changed {
		return // already unsubscribed: a replay changes nothing
	}
	srv.bus.Emit(events.Event{Time: now, Type: events.Unsubscribe, ID: id, Account: account, Recipient: addr, Detail: how})
	srv.bus.Emit(events.Event{Time: now, Type: events.Suppressed, ID: id, Account: account, Recipient: addr,
		Reason: e.Reason, Rule: e.Rule, Detail: "suppressed (unsubscribe, scope " + scopeName(e.Scope) + ")"})
}

var unsubPage = template.Must(template.New("u").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Unsubscribe</title><style>body{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}button{font-size:1.1em;padding:.5em 1.2em}</style></head>
<body>{{if .Done}}<h1>You are unsubscribed</h1><p>{{.Addr}} will not receive this sender's mail any more.</p>
{{else}}<h1>Unsubscribe</h1><p>Stop mail from this sender to {{.Addr}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>`))

// serveUnsubscribe starts the public unsubscribe endpoint.
func (srv *Server) serveUnsubscribe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("unsubscribe listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/unsubscribe/{token}", func(w http.ResponseWriter, r *http.Request) {
		account, rcpt, id, ok := srv.unsub.parse(r.PathValue("token"))
		if !ok {
			http.Error(w, "This unsubscribe link is not valid.", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			unsubPage.Execute(w, map[string]any{"Addr": rcpt})
		case http.MethodPost:
			srv.unsubscribe(account, rcpt, id, "one-click unsubscribe (RFC 8058) from "+clientOf(r))
			unsubPage.Execute(w, map[string]any{"Addr": rcpt, "Done": true})
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	srv.unsubHTTP = hs
	srv.listeners = append(srv.listeners, ln)
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !srv.stopping.Load() {
			srv.log.Error("unsubscribe listener stopped", "err", err)
		}
	}()
	return nil
}

func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
