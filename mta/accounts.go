package mta

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"kiln/configs"
)

// account is an [[account]] ready for checking.
type account struct {
	name    string
	hash    []byte
	domains []string
	notices bool
	pool    string
	// What to do when no DKIM key aligns with a message's From domain.
	dkimDomain    string
	dkimUnaligned string
	unsubscribe   bool
	checkDomains  bool
}

// accounts checks passwords. bcrypt is deliberately slow (tens of
// milliseconds), and an application may open a connection per message, so
// successful checks are remembered under an HMAC of user and password with a
// key made at start: a repeat login costs microseconds, and nothing in memory
// lets anyone recover a password.
type accounts struct {
	byName map[string]*account
	key    [32]byte

	mu sync.Mutex
	ok map[[32]byte]string // HMAC(user, password) -> account name
}

const authCacheMax = 10000

func newAccounts(cfg []configs.Account) *accounts {
	a := &accounts{byName: map[string]*account{}, ok: map[[32]byte]string{}}
	rand.Read(a.key[:])
	for _, c := range cfg {
		a.byName[c.Name] = &account{name: c.Name, hash: []byte(c.PasswordHash), domains: c.SenderDomains, notices: c.Notices(),
			pool: c.Pool, dkimDomain: c.DKIMDomain, dkimUnaligned: c.DKIMUnaligned, unsubscribe: c.Unsubscribe,
			checkDomains: c.CheckRecipientDomains}
	}
	return a
}

// check returns the account when the password is right.
func (a *accounts) check(user, password string) (*account, bool) {
	acct := a.byName[user]
	if acct == nil {
		// Spend the same time as a real check, so a guesser cannot tell
		// missing accounts from wrong passwords by the clock.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, false
	}
	mac := hmac.New(sha256.New, a.key[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var sum [32]byte
	copy(sum[:], mac.Sum(nil))
	a.mu.Lock()
	name, hit := a.ok[sum]
	a.mu.Unlock()
	if hit && subtle.ConstantTimeCompare([]byte(name), []byte(user)) == 1 {
		return acct, true
	}
	if bcrypt.CompareHashAndPassword(acct.hash, []byte(password)) != nil {
		return nil, false
	}
	a.mu.Lock()
	if len(a.ok) >= authCacheMax {
		clear(a.ok)
	}
	a.ok[sum] = user
	a.mu.Unlock()
	return acct, true
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("kiln: no such account"), bcrypt.DefaultCost)
