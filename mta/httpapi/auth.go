package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Principal is who a request speaks for: the admin (the operator), or one
// account.
type Principal struct {
	// Admin is true for the admin key (and, with no admin key configured,
	// for a loopback client that sends no key).
	Admin bool
	// Account is the account of an account key; "" for the admin.
	Account string
}

// KeyPrefix starts every account key: kiln_<account>_<secret>.
const KeyPrefix = "kiln_"

// maxKeyLen is bcrypt's limit: it ignores what follows the 72nd byte, so a
// longer key would be as strong as its first 72 bytes, and "kiln account
// hash" refuses to hash one.
const maxKeyLen = 72

// minSecretLen is the shortest secret part of an account key: 128 bits in hex.
const minSecretLen = 32

// keyCacheSize bounds the verified keys remembered by their SHA-256.
const keyCacheSize = 1024

// NewKey makes a fresh API key for account: kiln_<account>_<32 hex digits>
// (128 random bits). The operator hashes the whole key ("kiln account hash")
// into the account's api_key_hash and gives the key to the application.
func NewKey(account string) (string, error) {
	if account == "" || strings.ContainsAny(account, " \t\r\n:") {
		return "", errors.New("an account name has no spaces or ':'")
	}
	b := make([]byte, minSecretLen/2)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := KeyPrefix + account + "_" + hex.EncodeToString(b)
	if len(key) > maxKeyLen {
		return "", errors.New("the account name is too long for a key (bcrypt reads 72 bytes): at most 34 characters")
	}
	return key, nil
}

// splitKey reads the account out of a key shaped kiln_<account>_<secret>.
// The secret is the part after the last "_", so account names may hold "_".
func splitKey(key string) (account string, ok bool) {
	rest, found := strings.CutPrefix(key, KeyPrefix)
	if !found {
		return "", false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 || len(rest)-i-1 < minSecretLen {
		return "", false
	}
	return rest[:i], true
}

// keyring verifies keys. bcrypt costs tens of milliseconds by design, so a
// key names its account (one hash to try, not one per account), a verified
// key is remembered by its SHA-256 (a bounded set; the key itself is never
// kept), and at most a few verifications run at once, so a flood of wrong
// keys costs a few cores, not all of them.
type keyring struct {
	accounts map[string][]byte // account name -> bcrypt hash of its key
	admin    []byte

	mu   sync.Mutex
	good map[[32]byte]Principal

	slots chan struct{}

	dummyOnce sync.Once
	dummy     []byte
}

func newKeyring(accounts map[string]string, adminHash string) *keyring {
	k := &keyring{accounts: map[string][]byte{}, good: map[[32]byte]Principal{},
		slots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)/2))}
	for name, h := range accounts {
		if h != "" {
			k.accounts[name] = []byte(h)
		}
	}
	if adminHash != "" {
		k.admin = []byte(adminHash)
	}
	return k
}

// accountKey reports whether key is shaped as the key of an account that
// has one.
func (k *keyring) accountKey(key string) bool {
	acct, shaped := splitKey(key)
	return shaped && k.accounts[acct] != nil
}

var errBusy = errors.New("gave up waiting to verify the key")

// verify returns the principal key belongs to. A key shaped like an account
// key for an account with an API key is checked against that account's hash
// only; any other key against the admin hash.
func (k *keyring) verify(ctx context.Context, key string) (Principal, bool, error) {
	if key == "" || len(key) > maxKeyLen {
		return Principal{}, false, nil
	}
	sum := sha256.Sum256([]byte(key))
	k.mu.Lock()
	p, ok := k.good[sum]
	k.mu.Unlock()
	if ok {
		return p, true, nil
	}
	var hash []byte
	if acct, shaped := splitKey(key); shaped && k.accounts[acct] != nil {
		hash, p = k.accounts[acct], Principal{Account: acct}
	} else if k.admin != nil {
		hash, p = k.admin, Principal{Admin: true}
	}
	select {
	case k.slots <- struct{}{}:
	case <-ctx.Done():
		return Principal{}, false, errBusy
	}
	defer func() { <-k.slots }()
	if hash == nil {
		// Spend the same time as a real check, so the answer's delay does
		// not tell which account names exist.
		bcrypt.CompareHashAndPassword(k.dummyHash(), []byte(key))
		return Principal{}, false, nil
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(key)) != nil {
		return Principal{}, false, nil
	}
	k.mu.Lock()
	if len(k.good) >= keyCacheSize {
		for s := range k.good { // forget one at random
			delete(k.good, s)
			break
		}
	}
	k.good[sum] = p
	k.mu.Unlock()
	return p, true, nil
}

func (k *keyring) dummyHash() []byte {
	k.dummyOnce.Do(func() {
		cost := bcrypt.DefaultCost
		for _, h := range k.accounts {
			if c, err := bcrypt.Cost(h); err == nil {
				cost = c
				break
			}
		}
		if k.admin != nil {
			if c, err := bcrypt.Cost(k.admin); err == nil {
				cost = c
			}
		}
		k.dummy, _ = bcrypt.GenerateFromPassword([]byte("kiln-no-such-key"), cost)
	})
	return k.dummy
}

// bearer returns the key of an "Authorization: Bearer <key>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", h != ""
}

func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Authenticate returns the principal of r's bearer key. With no admin key
// configured, a loopback client is the admin, as on the rest of the admin
// listener, unless it sends an account's key, which is checked. The key is
// never logged.
func (a *API) Authenticate(r *http.Request) (Principal, bool) {
	p, _, ok := a.authenticate(r)
	return p, ok
}

// authenticate also says why it refused, for the 401's message (never
// echoing the key).
func (a *API) authenticate(r *http.Request) (Principal, string, bool) {
	key, sent := bearer(r)
	if a.keys.admin == nil && loopback(r) && !a.keys.accountKey(key) {
		// No admin key to check: a loopback client is the admin whatever
		// else it sends, as on the rest of the admin listener. An account's
		// key is still checked, so a mistyped one is refused rather than
		// quietly given the admin's reach.
		return Principal{Admin: true}, "", true
	}
	switch {
	case !sent:
		return Principal{}, "an API key is required (Authorization: Bearer <key>)", false
	case key == "":
		return Principal{}, "the Authorization header must be \"Bearer <key>\"", false
	}
	p, ok, err := a.keys.verify(r.Context(), key)
	if err != nil {
		return Principal{}, "the request ended before its key was checked", false
	}
	if !ok {
		return Principal{}, "the API key is not valid", false
	}
	return p, "", true
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal RequireAdmin, RequireAny or the API's
// own handler put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// RequireAdmin wraps a handler only the admin may use: 401 without a valid
// key, 403 for an account key.
func (a *API) RequireAdmin(next http.Handler) http.Handler {
	return a.guard(next, true)
}

// RequireAny wraps a handler every valid key may use; the handler reads the
// principal with PrincipalFrom and must limit an account to its own data.
func (a *API) RequireAny(next http.Handler) http.Handler {
	return a.guard(next, false)
}

func (a *API) guard(next http.Handler, adminOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.check(w, r, adminOnly)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// check authenticates r and answers 401 or 403 itself when it fails.
func (a *API) check(w http.ResponseWriter, r *http.Request, adminOnly bool) (Principal, bool) {
	p, why, ok := a.authenticate(r)
	if !ok {
		// Say what failed and from where, never what the key was.
		a.log.Info("api: request refused", "reason", why, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="kiln"`)
		writeError(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Message: why})
		return p, false
	}
	if adminOnly && !p.Admin {
		writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Message: "this endpoint needs the admin key"})
		return p, false
	}
	return p, true
}
