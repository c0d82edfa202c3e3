package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync"
	"time"
)

// RcptState is where one recipient of a message stands.
type RcptState string

const (
	RcptPending   RcptState = "pending"   // not delivered yet; tried again at Next
	RcptDelivered RcptState = "delivered" // the remote answered 250: never sent again
	RcptBounced   RcptState = "bounced"   // failed permanently
	RcptExpired   RcptState = "expired"   // still failing at the message's maximum age
	RcptDropped   RcptState = "dropped"   // removed by kiln or an operator without an attempt (suppressed, dropped)
)

// Done reports whether nothing more will happen to the recipient.
func (s RcptState) Done() bool { return s != RcptPending && s != "" }

// Rcpt is one recipient and its own delivery state: a retry never re-sends to
// a recipient that already got the mail.
type Rcpt struct {
	Addr     string    `json:"addr"`
	State    RcptState `json:"st"`
	Attempts int       `json:"att,omitempty"`
	// Next is when the recipient may be tried again (zero: at once).
	Next time.Time `json:"next,omitzero"`
	// The last reply: the remote's words are kept for events and notices.
	Code     int       `json:"code,omitempty"`
	Enhanced string    `json:"enh,omitempty"`
	Line     string    `json:"line,omitempty"`
	Host     string    `json:"host,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Updated  time.Time `json:"upd,omitzero"`
	// SoftFails counts temporary failures of this recipient in this message.
	SoftFails int `json:"soft,omitempty"`
	// Wait names the lane (egress pool and destination site) the recipient
	// waits in for sending capacity: it is then out of the schedule and
	// in that lane's wait index until the scheduler takes it.
	Wait string `json:"wait,omitempty"`
	// WaitSince is when the recipient entered its lane.
	WaitSince time.Time `json:"wait_since,omitzero"`
}

// Domain is the recipient's domain, lower-cased.
func (r Rcpt) Domain() string { return Domain(r.Addr) }

// Domain returns the lower-cased domain of an address, "" for none.
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// Kind tells ordinary mail from the notices kiln writes itself.
type Kind string

const (
	KindMail   Kind = ""       // accepted from a client
	KindNotice Kind = "notice" // a delivery status notification kiln generated
)

// BodyRef locates a body in the spool.
type BodyRef struct {
	Seg uint32 `json:"seg"`
	Off int64  `json:"off"`
	Len int64  `json:"len"`
	CRC uint32 `json:"crc"`
}

// Message is one accepted message: envelope, per-recipient state, and where its
// body is. The scheduler is the only writer after Enqueue.
type Message struct {
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind,omitempty"`
	Account   string    `json:"acct,omitempty"`
	From      string    `json:"from"` // envelope sender; "" is the null reverse-path
	Rcpts     []Rcpt    `json:"rcpts"`
	MessageID string    `json:"msgid,omitempty"` // the Message-ID header, for lookups
	Client    string    `json:"client,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Due is when the scheduler should next look at the message; it mirrors
	// the message's key in the schedule index.
	Due      time.Time `json:"due"`
	Attempts int       `json:"att,omitempty"`
	Held     bool      `json:"held,omitempty"`
	Leased   bool      `json:"leased,omitempty"`
	Priority int       `json:"prio,omitempty"`
	Pool     string    `json:"pool,omitempty"`
	// Notices: send an RFC 3464 notice to From when a recipient fails.
	Notices bool `json:"notices,omitempty"`
	// Waited is time spent waiting for a warm-up cap; it extends Expires so
	// a message never expires only because it waited its turn.
	Waited   time.Duration     `json:"waited,omitempty"`
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"meta,omitempty"`
	// Body is stored in the record's binary header, not in the JSON, so
	// recovery can count spool references without decoding every record.
	Body BodyRef `json:"-"`

	mu sync.Mutex // held while the record is changed or encoded
	// deleted is set once Delete has been committed: a Save arriving later
	// must not bring the record back.
	deleted bool

	// What the index holds for this message, so an update can remove the
	// old keys without reading them back.
	idxSched bool // a schedule key exists, at idxDue
	idxDue   time.Time
	idxHeld  bool
	idxLanes []string
	// What the store's in-memory counts hold for this message.
	idxCounted      bool
	idxCountedHeld  bool
	idxDomains      []string
	idxCountedLanes []string
}

// Pending returns the indexes of the recipients still to deliver.
func (m *Message) Pending() []int {
	var out []int
	for i := range m.Rcpts {
		if !m.Rcpts[i].State.Done() {
			out = append(out, i)
		}
	}
	return out
}

// Done reports whether every recipient is finished.
func (m *Message) Done() bool {
	for i := range m.Rcpts {
		if !m.Rcpts[i].State.Done() {
			return false
		}
	}
	return true
}

// NextDue is the earliest Next of the pending recipients that do not wait in
// a lane (zero when one is due at once, or none is pending).
func (m *Message) NextDue() time.Time {
	var next time.Time
	first := true
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.State.Done() || r.Wait != "" {
			continue
		}
		if first || r.Next.Before(next) {
			next, first = r.Next, false
		}
	}
	return next
}

// Lock and Unlock guard the message while a caller changes it; the store takes
// the same lock while encoding it, so a record is never written half-changed.
func (m *Message) Lock()   { m.mu.Lock() }
func (m *Message) Unlock() { m.mu.Unlock() }

// Clone returns a deep copy that shares nothing with m (for reports).
func (m *Message) Clone() *Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &Message{
		ID: m.ID, Kind: m.Kind, Account: m.Account, From: m.From, MessageID: m.MessageID,
		Client: m.Client, Created: m.Created, Expires: m.Expires, Due: m.Due, Attempts: m.Attempts,
		Held: m.Held, Leased: m.Leased, Priority: m.Priority, Pool: m.Pool, Notices: m.Notices,
		Waited: m.Waited, Body: m.Body,
	}
	c.Rcpts = append([]Rcpt(nil), m.Rcpts...)
	c.Tags = append([]string(nil), m.Tags...)
	if m.Metadata != nil {
		c.Metadata = make(map[string]string, len(m.Metadata))
		for k, v := range m.Metadata {
			c.Metadata[k] = v
		}
	}
	c.idxSched, c.idxDue, c.idxHeld = m.idxSched, m.idxDue, m.idxHeld
	c.idxLanes = append([]string(nil), m.idxLanes...)
	return c
}

// scheduled reports whether the message belongs in the schedule index: not
// held, not in the scheduler's hands, and with a pending recipient that is not
// waiting in a lane. A leased message needs no key: the scheduler holds it,
// and the lease flag in the record's header makes it due again at the next
// start if kiln stops before the attempt ends.
func (m *Message) scheduled() bool {
	if m.Held || m.Leased {
		return false
	}
	for i := range m.Rcpts {
		if !m.Rcpts[i].State.Done() && m.Rcpts[i].Wait == "" {
			return true
		}
	}
	return false
}

// lanes returns the lanes the message's pending recipients wait in, sorted
// (none while it is held).
func (m *Message) lanes() []string {
	if m.Held {
		return nil
	}
	var out []string
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.State.Done() || r.Wait == "" || slices.Contains(out, r.Wait) {
			continue
		}
		out = append(out, r.Wait)
	}
	slices.Sort(out)
	return out
}

// Record encoding:
//
//	version (1) | CRC-32C of the rest (4) | flags (1) | body segment (4)
//	| body offset (8) | body length (8) | body CRC-32C (4) | JSON of the envelope
//
// The checksum lets Open tell a damaged record from a good one instead of
// delivering garbage or silently skipping it; the fixed header lets it count
// spool references and find leased messages without decoding JSON.
const (
	recordVersion = 2
	recordHeader  = 1 + 4 + 1 + 4 + 8 + 8 + 4

	flagLeased = 1 << 0 // the scheduler held the message when it was written
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a record or body that failed its checks.
var ErrCorrupt = errors.New("corrupt")

func encodeRecord(m *Message) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := make([]byte, recordHeader+len(js))
	out[0] = recordVersion
	if m.Leased {
		out[5] |= flagLeased
	}
	binary.BigEndian.PutUint32(out[6:10], m.Body.Seg)
	binary.BigEndian.PutUint64(out[10:18], uint64(m.Body.Off))
	binary.BigEndian.PutUint64(out[18:26], uint64(m.Body.Len))
	binary.BigEndian.PutUint32(out[26:30], m.Body.CRC)
	copy(out[recordHeader:], js)
	binary.BigEndian.PutUint32(out[1:5], crc32.Checksum(out[5:], castagnoli))
	return out, nil
}

// checkRecord verifies a record's checksum and returns its body reference
// and whether it was leased, without decoding the JSON.
func checkRecord(b []byte) (BodyRef, bool, error) {
	if len(b) < recordHeader {
		return BodyRef{}, false, fmt.Errorf("%w: record of %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return BodyRef{}, false, fmt.Errorf("%w: unknown record version %d", ErrCorrupt, b[0])
	}
	if got, want := crc32.Checksum(b[5:], castagnoli), binary.BigEndian.Uint32(b[1:5]); got != want {
		return BodyRef{}, false, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return BodyRef{
		Seg: binary.BigEndian.Uint32(b[6:10]),
		Off: int64(binary.BigEndian.Uint64(b[10:18])),
		Len: int64(binary.BigEndian.Uint64(b[18:26])),
		CRC: binary.BigEndian.Uint32(b[26:30]),
	}, b[5]&flagLeased != 0, nil
}

func decodeRecord(b []byte) (*Message, error) {
	ref, _, err := checkRecord(b)
	if err != nil {
		return nil, err
	}
	m := new(Message)
	if err := json.Unmarshal(b[recordHeader:], m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if !ValidID(m.ID) || len(m.Rcpts) == 0 {
		return nil, fmt.Errorf("%w: record without id or recipients", ErrCorrupt)
	}
	m.Body = ref
	m.idxSched, m.idxDue, m.idxHeld = m.scheduled(), m.Due, m.Held
	m.idxLanes = m.lanes()
	// Every stored record is in the counts (recovery put it there).
	m.idxCounted, m.idxCountedHeld, m.idxDomains, m.idxCountedLanes = true, m.Held, m.pendingDomains(), m.idxLanes
	return m, nil
}
