package suppress

import (
	"encoding/binary"
	"errors"
	"time"
)

// Key prefixes of the shared store (see the package doc).
var (
	prefixEntry  = []byte("supp/e/")
	prefixExpiry = []byte("supp/x/")
	prefixSoft   = []byte("supp/s/")
	prefixTrip   = []byte("supp/b/")
)

// Kinds of expiry index keys.
const (
	kindEntry = 'e'
	kindSoft  = 's'
)

// itemKey is <prefix><scope> 0x00 <address>: iteration keeps each scope's
// entries together, sorted by address.
func itemKey(prefix []byte, scope, addr string) []byte {
	k := make([]byte, 0, len(prefix)+len(scope)+1+len(addr))
	k = append(k, prefix...)
	k = append(k, scope...)
	k = append(k, 0)
	return append(k, addr...)
}

func entryKey(scope, addr string) []byte { return itemKey(prefixEntry, scope, addr) }
func softKey(scope, addr string) []byte  { return itemKey(prefixSoft, scope, addr) }

// splitItemKey returns the scope and address of an entry or soft-count key
// without its prefix.
func splitItemKey(rest []byte) (scope, addr string, ok bool) {
	for i, c := range rest {
		if c == 0 {
			return string(rest[:i]), string(rest[i+1:]), true
		}
	}
	return "", "", false
}

// expiryKey is supp/x/<unix nanos, 8 bytes big-endian><kind><scope> 0x00 <address>.
func expiryKey(at time.Time, kind byte, scope, addr string) []byte {
	k := make([]byte, 0, len(prefixExpiry)+9+len(scope)+1+len(addr))
	k = append(k, prefixExpiry...)
	k = binary.BigEndian.AppendUint64(k, nanos(at))
	k = append(k, kind)
	k = append(k, scope...)
	k = append(k, 0)
	return append(k, addr...)
}

func parseExpiryKey(k []byte) (at time.Time, kind byte, scope, addr string, ok bool) {
	rest := k[len(prefixExpiry):]
	if len(rest) < 10 {
		return
	}
	at = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
	kind = rest[8]
	scope, addr, ok = splitItemKey(rest[9:])
	return
}

func nanos(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// Values are a version byte followed by uvarints and length-prefixed
// strings: an entry is read for every suppressed recipient, so decoding is
// kept cheap, and a million entries stay small on disk.
const recordV1 = 1

var errRecord = errors.New("unreadable suppression record")

type enc []byte

func (b enc) str(s string) enc {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (b enc) num(n uint64) enc { return binary.AppendUvarint(b, n) }

type dec struct {
	b   []byte
	bad bool
}

func (d *dec) num() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.num()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func timeOf(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// encodeEntry writes everything but the scope and address, which are in the key.
func encodeEntry(e Entry) []byte {
	b := enc(make([]byte, 0, 32+len(e.Reason)+len(e.Reply)+len(e.Rule)+len(e.QueueID)+len(e.Note)))
	b = append(b, recordV1)
	b = b.str(e.Reason).str(string(e.Source)).str(e.Reply).str(e.Rule).str(e.QueueID).str(e.Status).str(e.Note)
	b = b.num(nanos(e.Created))
	if e.Expires.IsZero() {
		b = b.num(0)
	} else {
		b = b.num(max(nanos(e.Expires), 1))
	}
	return b
}

func decodeEntry(scope, addr string, v []byte) (Entry, error) {
	if len(v) == 0 || v[0] != recordV1 {
		return Entry{}, errRecord
	}
	d := dec{b: v[1:]}
	e := Entry{Scope: scope, Address: addr}
	e.Reason, e.Source, e.Reply, e.Rule = d.str(), Source(d.str()), d.str(), d.str()
	e.QueueID, e.Status, e.Note = d.str(), d.str(), d.str()
	e.Created, e.Expires = timeOf(d.num()), timeOf(d.num())
	if d.bad {
		return Entry{}, errRecord
	}
	return e, nil
}

// softRec counts the distinct messages to one address that failed softly
// within the window, oldest first, and remembers the last failure.
type softRec struct {
	Reason, Rule, Status, Reply string
	Msgs                        []softMsg
}

type softMsg struct {
	ID string
	At time.Time
}

// newest is when the last counted failure happened.
func (r *softRec) newest() time.Time {
	var t time.Time
	for _, m := range r.Msgs {
		if m.At.After(t) {
			t = m.At
		}
	}
	return t
}

func encodeSoft(r *softRec) []byte {
	b := enc(make([]byte, 0, 64+len(r.Reply)))
	b = append(b, recordV1)
	b = b.str(r.Reason).str(r.Rule).str(r.Status).str(r.Reply).num(uint64(len(r.Msgs)))
	for _, m := range r.Msgs {
		b = b.str(m.ID).num(nanos(m.At))
	}
	return b
}

func decodeSoft(v []byte) (*softRec, error) {
	if len(v) == 0 || v[0] != recordV1 {
		return nil, errRecord
	}
	d := dec{b: v[1:]}
	r := &softRec{}
	r.Reason, r.Rule, r.Status, r.Reply = d.str(), d.str(), d.str(), d.str()
	n := d.num()
	if n > 10000 {
		return nil, errRecord
	}
	for i := uint64(0); i < n && !d.bad; i++ {
		r.Msgs = append(r.Msgs, softMsg{ID: d.str(), At: timeOf(d.num())})
	}
	if d.bad {
		return nil, errRecord
	}
	return r, nil
}
