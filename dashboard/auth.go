package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"kiln/internal/clock"
)

const (
	cookieName  = "kiln_session"
	csrfHeader  = "X-Kiln-CSRF"
	maxSessions = 1000
)

type session struct {
	csrf    string
	expires time.Time
}

// sessions are kept in memory, by the SHA-256 of their token, so that the
// map holds nothing a memory dump could replay as a cookie.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	clk clock.Clock
	ttl time.Duration
}

func newSessions(clk clock.Clock, ttl time.Duration) *sessions {
	return &sessions{m: map[[32]byte]*session{}, clk: clk, ttl: ttl}
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) create() (string, *session) {
	token := randomToken()
	now := s.clk.Now()
	sess := &session{csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		var soonest [32]byte
		var at time.Time
		for k, v := range s.m {
			if !now.Before(v.expires) {
				delete(s.m, k)
				continue
			}
			if at.IsZero() || v.expires.Before(at) {
				soonest, at = k, v.expires
			}
		}
		if len(s.m) >= maxSessions {
			delete(s.m, soonest)
		}
	}
	s.m[sha256.Sum256([]byte(token))] = sess
	return token, sess
}

func (s *sessions) get(token string) *session {
	if token == "" {
		return nil
	}
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[k]
	if sess != nil && !s.clk.Now().Before(sess.expires) {
		delete(s.m, k)
		return nil
	}
	return sess
}

func (s *sessions) end(token string) {
	s.mu.Lock()
	delete(s.m, sha256.Sum256([]byte(token)))
	s.mu.Unlock()
}

// bearer returns the key of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if len(a) < 7 || !strings.EqualFold(a[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(a[7:]), true
}

func sessionToken(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

var crossOrigin = http.NewCrossOriginProtection()

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

type authResult int

const (
	authNone    authResult = iota // no credential, or an expired session
	authBadKey                    // a bearer key that is not the admin key
	authBearer                    // the admin key in the header
	authSession                   // a live session
)

func (h *Handler) authenticate(r *http.Request) (authResult, *session) {
	if key, ok := bearer(r); ok {
		if h.opts.Authorize(key) {
			return authBearer, nil
		}
		return authBadKey, nil
	}
	if sess := h.sessions.get(sessionToken(r)); sess != nil {
		return authSession, sess
	}
	return authNone, nil
}

// auth lets through the admin key and live sessions; a session's unsafe
// request must also be same-origin and carry the CSRF token.
func (h *Handler) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, sess := h.authenticate(r)
		switch res {
		case authBearer:
			next(w, r)
			return
		case authBadKey:
			h.log.Warn("dashboard request with a wrong admin key", "remote", r.RemoteAddr, "path", r.URL.Path)
			fallthrough
		case authNone:
			writeError(w, http.StatusUnauthorized, "unauthorized", "the admin key is required: log in, or send Authorization: Bearer <key>")
			return
		}
		if unsafeMethod(r.Method) {
			if err := crossOrigin.Check(r); err != nil {
				writeError(w, http.StatusForbidden, "forbidden", "cross-origin request refused")
				return
			}
			got := r.Header.Get(csrfHeader)
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "forbidden", "missing or wrong "+csrfHeader+" header")
				return
			}
		}
		next(w, r)
	}
}

// safeNext keeps a post-login redirect on the dashboard.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/dashboard/") || strings.ContainsAny(next, "\\\r\n") || strings.Contains(next, "//") {
		return "/dashboard/"
	}
	return next
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := struct {
		Next, Error string
	}{Next: safeNext(q.Get("next"))}
	switch q.Get("error") {
	case "key":
		data.Error = "That is not the admin key."
	case "busy":
		data.Error = "Too many wrong keys: wait a minute and try again."
	case "expired":
		data.Error = "Your session ended: log in again."
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := loginTmpl.Execute(w, data); err != nil {
		h.log.Error("rendering the login page failed", "err", err)
	}
}

// login checks the posted key and starts a session.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if err := crossOrigin.Check(r); err != nil {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	key := r.PostFormValue("key")
	next := safeNext(r.PostFormValue("next"))
	back := "/dashboard/login?next=" + next
	if h.failures.Tokens() < 1 {
		http.Redirect(w, r, back+"&error=busy", http.StatusSeeOther)
		return
	}
	if key == "" || !h.opts.Authorize(key) {
		h.failures.Allow()
		h.log.Warn("dashboard login with a wrong key", "remote", r.RemoteAddr)
		http.Redirect(w, r, back+"&error=key", http.StatusSeeOther)
		return
	}
	token, sess := h.sessions.create()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/", Expires: sess.expires, MaxAge: int(h.opts.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || h.opts.SecureCookie,
	})
	h.log.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	h.sessions.end(sessionToken(r))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || h.opts.SecureCookie})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

func (h *Handler) apiSession(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"refresh_ms": h.opts.Refresh.Milliseconds()}
	if sess := h.sessions.get(sessionToken(r)); sess != nil {
		out["csrf"] = sess.csrf
		out["expires"] = sess.expires
	}
	writeJSON(w, http.StatusOK, out)
}
