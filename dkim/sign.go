package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"kiln/internal/keyerr"
)

// DefaultHeaders are the header fields kiln signs when a message has them
// (RFC 6376 §5.4.1's list, plus what mailbox providers check): each one
// present is listed in h= once more than it appears ("over-signing", RFC
// 6376 §8.15), so a copy added after signing breaks the signature instead of
// riding on it. From is always listed, even when absent (RFC 6376 §5.4).
var DefaultHeaders = []string{
	"From", "Reply-To", "Sender", "Subject", "Date", "Message-ID", "To", "Cc",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID",
	"Content-Description", "Content-Language", "In-Reply-To", "References",
	// RFC 2369 and RFC 2919 list fields. RFC 8058 §4: one-click
	// unsubscription counts only when List-Unsubscribe and
	// List-Unsubscribe-Post are both covered by a valid signature.
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	// Gmail's feedback loop; RFC 9477 §3.2 requires CFBL-Address signed;
	// BIMI-Selector is honoured only when signed.
	"Feedback-ID", "CFBL-Address", "CFBL-Feedback-ID", "BIMI-Selector",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"Resent-Message-ID", "Precedence", "Auto-Submitted",
}

// Errors of the signing API; the submission path tells them apart with
// errors.Is to apply the account's policy or refuse the message.
var (
	// ErrNotAligned: no key's domain is the From domain or a parent of it.
	ErrNotAligned = errors.New("dkim: no signing key aligned with the From domain")
	// ErrNoKey: SignAs was given a domain with no active key.
	ErrNoKey = errors.New("dkim: no signing key for the domain")
	// ErrNoFrom, ErrMultipleFrom and ErrBadFrom are FromDomain's verdicts
	// on a message that has no usable author (RFC 5322 §3.6: exactly one
	// From field).
	ErrNoFrom       = errors.New("message has no From header field")
	ErrMultipleFrom = errors.New("message has more than one From header field")
	ErrBadFrom      = errors.New("message's From header field does not hold one valid address")
)

// Signer makes kiln's DKIM signatures. It is built once from the config
// and is safe for concurrent use by every submission session.
type Signer struct {
	keys     []*Key            // every key, in config order
	active   map[string][]*Key // signing domain → its active keys, RSA first
	operator []*Key            // the operator signature's keys, or none
	opDomain string
	expiry   time.Duration
	// names are the lower-case header names to sign, in h= order; index
	// maps each to its position.
	names []string
	index map[string]int
}

// NewSigner loads the keys of the [[dkim]] entries and checks them against
// the [signing] table. Its errors are *keyerr.Error values naming the key
// in the file ("dkim[2].key", "signing.operator_domain"); a key file that is
// missing, unreadable, of the wrong type or too short is named with what is
// wrong, on one line. With no entries it returns a Signer that aligns with
// nothing.
func NewSigner(keys []KeyConfig, cfg SigningConfig) (*Signer, error) {
	if err := ValidateKeys(keys); err != nil {
		return nil, err
	}
	var loaded []*Key
	for i, kc := range keys {
		priv, err := LoadKey(kc.Key)
		if err != nil {
			return nil, keyerr.New(fmt.Sprintf("dkim[%d].key", i), "%v", err)
		}
		k, err := NewKey(kc.Domain, strings.ToLower(kc.Selector), priv)
		if err != nil {
			return nil, keyerr.New(fmt.Sprintf("dkim[%d].key", i), "key file %s: %v", kc.Key, err)
		}
		k.File, k.Retired = kc.Key, kc.Retired
		loaded = append(loaded, k)
	}
	return New(loaded, cfg)
}

// New builds a Signer from keys already in memory (tests, tools). cfg's
// errors name keys under "signing.".
func New(keys []*Key, cfg SigningConfig) (*Signer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, keyerr.Under("signing", err)
	}
	s := &Signer{keys: keys, active: map[string][]*Key{}, expiry: cfg.Expiry.D(), index: map[string]int{}}
	for _, k := range keys {
		if !k.Retired {
			s.active[k.Domain] = append(s.active[k.Domain], k)
		}
	}
	for _, ks := range s.active {
		// RSA first: a verifier that checks only the topmost signature
		// (dkimpy's default) should find the one everyone supports.
		sort.SliceStable(ks, func(i, j int) bool { return ks[i].algo == RSA && ks[j].algo != RSA })
	}
	if cfg.OperatorDomain != "" {
		s.opDomain = normDomain(cfg.OperatorDomain)
		for _, k := range s.active[s.opDomain] {
			if len(cfg.OperatorSelectors) == 0 || containsFold(cfg.OperatorSelectors, k.Selector) {
				s.operator = append(s.operator, k)
			}
		}
		if len(s.operator) == 0 {
			return nil, keyerr.New("signing.operator_domain", "no active [[dkim]] key for %s%s", s.opDomain, selectorsNote(cfg.OperatorSelectors))
		}
	}
	for _, h := range append(append([]string(nil), DefaultHeaders...), cfg.Headers...) {
		h = strings.ToLower(h)
		if _, dup := s.index[h]; !dup {
			s.index[h] = len(s.names)
			s.names = append(s.names, h)
		}
	}
	return s, nil
}

func selectorsNote(sel []string) string {
	if len(sel) == 0 {
		return ""
	}
	return " with selector " + strings.Join(sel, " or ")
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Keys returns every configured key, retired ones included, in config
// order (for "kiln domain check" and "kiln dkim check").
func (s *Signer) Keys() []*Key { return s.keys }

// OperatorDomain is the domain of the operator's second signature, "" if
// none is configured.
func (s *Signer) OperatorDomain() string { return s.opDomain }

// Aligned returns the signing domain Sign would use for mail from
// fromDomain: the From domain itself or its nearest parent that has an
// active key (relaxed alignment, RFC 7489 §3.1.1). ok is false when there is
// none, and submission then applies the account's policy: SignAs the
// account's default domain, refuse with 5.7.x, or send with SignOperator
// only (or unsigned).
func (s *Signer) Aligned(fromDomain string) (domain string, ok bool) {
	d := asciiDomain(fromDomain)
	for d != "" {
		if len(s.active[d]) > 0 {
			return d, true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", false
}

// Sign returns the DKIM-Signature header fields (each ending in CRLF) to
// put in front of msg: one per active key of the domain aligned with
// fromDomain (RSA and Ed25519 when both are configured), then the
// operator's, if configured and not the same keys. now is the signature
// time (t=); x= is now plus the configured expiry.
//
// msg is the whole message, header and body, with CRLF line endings only.
// A message whose last line lacks its CRLF is signed as SMTP transmits it,
// with the CRLF added (RFC 5321 §4.1.1.4). fromDomain is the domain of its single From address (see FromDomain).
// Without an aligned key Sign returns an error wrapping ErrNotAligned; a
// message that cannot be signed safely gives a *MessageError.
func (s *Signer) Sign(msg []byte, fromDomain string, now time.Time) ([]byte, error) {
	d, ok := s.Aligned(fromDomain)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotAligned, asciiDomain(fromDomain))
	}
	return s.sign(msg, s.withOperator(s.active[d]), now)
}

// SignAs is Sign with the signing domain chosen by the caller (an
// account's default domain when the From domain has no key). It returns an
// error wrapping ErrNoKey when the domain has no active key.
func (s *Signer) SignAs(domain string, msg []byte, now time.Time) ([]byte, error) {
	ks := s.active[asciiDomain(domain)]
	if len(ks) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, asciiDomain(domain))
	}
	return s.sign(msg, s.withOperator(ks), now)
}

// SignOperator returns only the operator's signature(s), for mail sent
// without an aligned signature; nil when no operator domain is configured.
func (s *Signer) SignOperator(msg []byte, now time.Time) ([]byte, error) {
	if len(s.operator) == 0 {
		return nil, nil
	}
	return s.sign(msg, s.operator, now)
}

func (s *Signer) withOperator(ks []*Key) []*Key {
	if len(s.operator) == 0 || s.operator[0].Domain == ks[0].Domain {
		return ks
	}
	return append(append(make([]*Key, 0, len(ks)+len(s.operator)), ks...), s.operator...)
}

// sign makes one signature per key over msg. The body is canonicalised and
// hashed once, and the signed header fields canonicalised once, whatever
// the number of keys: only the signature header and the private-key
// operation are per key.
func (s *Signer) sign(msg []byte, keys []*Key, now time.Time) ([]byte, error) {
	header, body := splitMessage(msg)
	var fieldsBuf [48]field
	fields, err := parseHeader(msg, header, fieldsBuf[:0])
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if err := hashBody(h, msg, len(msg)-len(body), body); err != nil {
		return nil, err
	}
	var sum [sha256.Size]byte
	var bh [44]byte
	base64.StdEncoding.Encode(bh[:], h.Sum(sum[:0]))

	hlist, canon := s.pickHeaders(fields, make([]byte, 0, len(header)+64))

	t := now.Unix()
	var x int64
	if s.expiry > 0 {
		x = now.Add(s.expiry).Unix()
	}
	out := make([]byte, 0, len(keys)*(600+len(hlist)))
	scratch := make([]byte, 0, 512+len(hlist))
	for _, k := range keys {
		start := len(out)
		f := folder{b: out, lineStart: start}
		f.b = append(f.b, "DKIM-Signature:"...)
		f.tags(k, t, x, hlist, bh[:])
		// The signature field is hashed last, with b= empty and without
		// its final CRLF (RFC 6376 §3.7).
		scratch = appendRelaxedField(scratch[:0], []byte("DKIM-Signature"), f.b[start+len("DKIM-Signature:"):])
		h.Reset()
		h.Write(canon)
		h.Write(scratch[:len(scratch)-2])
		sig, err := signDigest(k, h.Sum(sum[:0]))
		if err != nil {
			return nil, fmt.Errorf("dkim: signing with %s: %v", k.RecordName(), err)
		}
		f.base64(sig)
		out = append(f.b, '\r', '\n')
	}
	return out, nil
}

// pickHeaders builds the h= list and the canonical text of the fields it
// covers, in that order. Each header name in s.names that the message has
// n times is listed n+1 times and its fields are taken bottom-up (RFC 6376
// §5.4.2); From is listed even when absent.
func (s *Signer) pickHeaders(fields []field, canon []byte) (hlist []byte, _ []byte) {
	// which[i] is the index in s.names of fields[i]'s name, or -1.
	var whichBuf [48]int16
	which := whichBuf[:0]
	var count [64]int
	counts := count[:]
	if len(s.names) > len(count) {
		counts = make([]int, len(s.names))
	}
	var lower [80]byte
	for _, f := range fields {
		w := int16(-1)
		if len(f.name) <= len(lower) {
			n := lower[:len(f.name)]
			for i, c := range f.name {
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				n[i] = c
			}
			if i, ok := s.index[string(n)]; ok {
				w = int16(i)
				counts[i]++
			}
		}
		which = append(which, w)
	}
	hlist = make([]byte, 0, 256)
	for i, name := range s.names {
		n := counts[i]
		if n == 0 && name != "from" {
			continue
		}
		for j := len(fields) - 1; j >= 0; j-- {
			if which[j] == int16(i) {
				canon = appendRelaxedField(canon, fields[j].name, fields[j].value)
			}
		}
		for j := 0; j <= n; j++ {
			hlist = append(hlist, name...)
			hlist = append(hlist, ':')
		}
	}
	return hlist[:len(hlist)-1], canon
}

func signDigest(k *Key, digest []byte) ([]byte, error) {
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		if k.rsaSigner != nil {
			return k.rsaSigner.Sign(nil, digest, crypto.SHA256)
		}
		return rsa.SignPKCS1v15(nil, p, crypto.SHA256, digest)
	case ed25519.PrivateKey:
		// RFC 8463 §3: PureEd25519 over the SHA-256 hash of the
		// canonicalised header, the same hash RSA signs.
		return ed25519.Sign(p, digest), nil
	}
	return nil, errors.New("unsupported key")
}

// foldAt is the column past which the signature field is folded, so
// its lines stay within RFC 5322 §2.1.1's recommended 78 characters.
const foldAt = 76

// folder writes a header field, folding with CRLF TAB where a line would
// grow past foldAt. A TAB counts as 8 columns.
type folder struct {
	b         []byte
	lineStart int
}

func (f *folder) col() int { return len(f.b) - f.lineStart }

func (f *folder) fold() {
	f.b = append(f.b, '\r', '\n', '\t')
	f.lineStart = len(f.b) - 8
}

// word appends w after a space, or after a fold when it would not fit.
// With space false a fold is the only separator (FWS inside h=).
func (f *folder) word(w []byte, space bool) {
	n := len(w)
	if space {
		n++
	}
	if f.col()+n > foldAt && f.col() > 8 {
		f.fold()
	} else if space {
		f.b = append(f.b, ' ')
	}
	f.b = append(f.b, w...)
}

// tags writes every tag but b's value, in a fixed order; b= comes last so
// its value can be appended.
func (f *folder) tags(k *Key, t, x int64, hlist, bh []byte) {
	var tmp [128]byte
	f.word(append(append(append(tmp[:0], "v=1; a="...), k.algo...), "-sha256;"...), true)
	f.word([]byte("c=relaxed/relaxed;"), true)
	f.word(append(append(append(tmp[:0], "d="...), k.Domain...), ';'), true)
	f.word(append(append(append(tmp[:0], "s="...), k.Selector...), ';'), true)
	f.word(append(strconv.AppendInt(append(tmp[:0], "t="...), t, 10), ';'), true)
	if x != 0 {
		f.word(append(strconv.AppendInt(append(tmp[:0], "x="...), x, 10), ';'), true)
	}
	// h= may fold after any colon (RFC 6376 §3.5 allows FWS there).
	first := true
	for len(hlist) > 0 {
		i := bytes.IndexByte(hlist, ':')
		var w []byte
		if i < 0 {
			w = append(append(tmp[:0], hlist...), ';')
			hlist = nil
		} else {
			w = append(tmp[:0], hlist[:i+1]...)
			hlist = hlist[i+1:]
		}
		if first {
			w = append([]byte("h="), w...)
		}
		f.word(w, first)
		first = false
	}
	f.word(append(append(append(tmp[:0], "bh="...), bh...), ';'), true)
	f.word([]byte("b="), true)
}

// base64 appends the signature value, folded (FWS is allowed anywhere in
// b=, RFC 6376 §3.5).
func (f *folder) base64(sig []byte) {
	var buf [700]byte
	v := base64.StdEncoding.AppendEncode(buf[:0], sig)
	for len(v) > 0 {
		room := foldAt - f.col()
		if room < 8 {
			f.fold()
			continue
		}
		n := min(room, len(v))
		f.b = append(f.b, v[:n]...)
		v = v[n:]
	}
}

// FromDomain returns the domain of msg's author, lower-cased and in A-label
// form: the address of its single From field (RFC 5322 §3.6.2). It errs with ErrNoFrom,
// ErrMultipleFrom or ErrBadFrom (wrapped, with detail), or a *MessageError
// when the header itself is malformed; submission refuses all of them
// (5.6.0), since neither DKIM alignment nor DMARC works without one author.
func FromDomain(msg []byte) (string, error) {
	header, _ := splitMessage(msg)
	var fieldsBuf [48]field
	fields, err := parseHeader(msg, header, fieldsBuf[:0])
	if err != nil {
		return "", err
	}
	var from []byte
	n := 0
	for _, f := range fields {
		if bytes.EqualFold(f.name, []byte("From")) {
			from = f.value
			n++
		}
	}
	switch {
	case n == 0:
		return "", ErrNoFrom
	case n > 1:
		return "", ErrMultipleFrom
	}
	// Unfold (RFC 5322 §2.2.3) and parse; the display name's charset does
	// not matter here, so encoded words are taken as they are.
	value := string(bytes.ReplaceAll(from, crlf, nil))
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	list, err := p.ParseList(value)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadFrom, strings.TrimPrefix(err.Error(), "mail: "))
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%w: it holds %d addresses", ErrBadFrom, len(list))
	}
	at := strings.LastIndexByte(list[0].Address, '@')
	if at < 0 || at == len(list[0].Address)-1 {
		return "", fmt.Errorf("%w: %q has no domain", ErrBadFrom, list[0].Address)
	}
	return asciiDomain(list[0].Address[at+1:]), nil
}

// asciiDomain lower-cases d, drops a final dot and, when it has non-ASCII
// labels (an internationalised address, RFC 6531), turns it into A-labels
// (RFC 5890), the form in which signing domains are configured and
// published.
func asciiDomain(d string) string {
	d = normDomain(d)
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return strings.ToLower(a)
			}
			return d
		}
	}
	return d
}
