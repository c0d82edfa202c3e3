package mta

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// VERP (variable envelope return path): with [bounce] domain set, each
// recipient's copy of a message leaves with the return path
//
//	b-<queue id>-<recipient hash>-<mac>@<bounce domain>
//
// A bounce report sent back to that address names, by itself, the message
// and the recipient that failed, whatever the reporting MTA wrote in its
// report. The mac (HMAC-SHA256 over the id and the hash, 60 bits) means a
// forged report cannot name anyone: only kiln can make a valid address. The
// local part stays at 40 characters, well within RFC 5321's 64, and uses
// only lower-case letters and digits, so MTAs that fold case keep it intact.
type verp struct {
	domain string
	key    []byte
}

var b32 = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

var verpSecretKey = []byte("mta/verp-secret")

// newVERP returns nil when VERP is off. Without a configured secret it uses
// the one kept in the store, making it at first start.
func newVERP(domain, secret string, db *badger.DB) (*verp, error) {
	if domain == "" {
		return nil, nil
	}
	v := &verp{domain: strings.ToLower(strings.TrimSuffix(domain, "."))}
	if secret != "" {
		v.key = []byte(secret)
		return v, nil
	}
	err := db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(verpSecretKey)
		if err == nil {
			v.key, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		v.key = make([]byte, 32)
		if _, err := rand.Read(v.key); err != nil {
			return err
		}
		return txn.Set(verpSecretKey, v.key)
	})
	if err != nil {
		return nil, fmt.Errorf("VERP secret: %w", err)
	}
	return v, nil
}

// rcptHash names a recipient in 8 characters (40 bits of SHA-256 of the
// lower-cased address): enough to tell one message's recipients apart.
func rcptHash(addr string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(addr)))
	return b32.EncodeToString(sum[:5])
}

func (v *verp) mac(id, rh string) string {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(id))
	m.Write([]byte{'|'})
	m.Write([]byte(rh))
	return b32.EncodeToString(m.Sum(nil)[:8])[:12]
}

// returnPath is the envelope sender for recipient rcpt of message id.
func (v *verp) returnPath(id, rcpt string) string {
	rh := rcptHash(rcpt)
	return "b-" + id + "-" + rh + "-" + v.mac(id, rh) + "@" + v.domain
}

// verpToken is what a valid return path names.
type verpToken struct {
	ID       string // kiln's queue id
	RcptHash string
}

// parse checks a bounce address and returns what it names; ok is false for
// anything kiln did not make (another domain, a malformed or forged token).
func (v *verp) parse(addr string) (verpToken, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], v.domain) {
		return verpToken{}, false
	}
	parts := strings.Split(strings.ToLower(addr[:at]), "-")
	if len(parts) != 4 || parts[0] != "b" || len(parts[1]) != 16 || len(parts[2]) != 8 || len(parts[3]) != 12 {
		return verpToken{}, false
	}
	if !hmac.Equal([]byte(parts[3]), []byte(v.mac(parts[1], parts[2]))) {
		return verpToken{}, false
	}
	return verpToken{ID: parts[1], RcptHash: parts[2]}, true
}
