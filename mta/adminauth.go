package mta

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// adminAuth guards the admin API. With [admin] key_hash set, every request
// carries the key as a bearer token; bcrypt is slow, so a key once checked
// is remembered by its SHA-256. Without a key, only loopback clients are
// served: the default listener is on loopback, and an operator who opens it
// wider must set a key. The key itself is never logged.
type adminAuth struct {
	hash []byte

	mu   sync.Mutex
	good map[[32]byte]bool

	// local is a key made at start for loopback requests when no key is
	// configured, so the dashboard (which checks keys itself) lets them in.
	local string
}

func newAdminAuth(hash string) *adminAuth {
	a := &adminAuth{hash: []byte(hash), good: map[[32]byte]bool{}}
	b := make([]byte, 24)
	rand.Read(b)
	a.local = hex.EncodeToString(b)
	return a
}

// check reports whether key is the admin key.
func (a *adminAuth) check(key string) bool {
	if len(a.hash) == 0 {
		return subtle.ConstantTimeCompare([]byte(key), []byte(a.local)) == 1
	}
	sum := sha256.Sum256([]byte(key))
	a.mu.Lock()
	ok := a.good[sum]
	a.mu.Unlock()
	if ok {
		return true
	}
	if bcrypt.CompareHashAndPassword(a.hash, []byte(key)) != nil {
		return false
	}
	a.mu.Lock()
	if len(a.good) > 100 {
		clear(a.good)
	}
	a.good[sum] = true
	a.mu.Unlock()
	return true
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func loopbackRequest(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// require wraps the API: 401 without the key (or, with no key configured,
// for a client not on loopback).
func (a *adminAuth) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.hash) == 0 {
			if !loopbackRequest(r) {
				writeError(w, http.StatusUnauthorized, "unauthorized", "the admin API serves only loopback clients until [admin] key_hash is set")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if !a.check(bearer(r)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin key is required (Authorization: Bearer <key>)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// dashboardGate lets loopback clients into the dashboard when no key is
// configured, by presenting the local key the dashboard accepts; everyone
// else logs in with the admin key.
func (a *adminAuth) dashboardGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.hash) == 0 {
			if !loopbackRequest(r) {
				writeError(w, http.StatusUnauthorized, "unauthorized", "the dashboard serves only loopback clients until [admin] key_hash is set")
				return
			}
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+a.local)
		}
		next.ServeHTTP(w, r)
	})
}
