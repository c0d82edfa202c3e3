package queue

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// IDs are 16 characters of Crockford base32 over 48 bits of milliseconds and 30
// bits of a counter that starts at a random value: they sort by creation time,
// are unique within a process, and a restart in the same millisecond picks
// another counter.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

type idGen struct {
	mu  sync.Mutex
	seq uint32
}

func newIDGen() *idGen {
	var b [4]byte
	rand.Read(b[:])
	return &idGen{seq: binary.BigEndian.Uint32(b[:])}
}

func (g *idGen) next(now time.Time) string {
	g.mu.Lock()
	g.seq++
	seq := g.seq
	g.mu.Unlock()
	var out [16]byte
	t := uint64(now.UnixMilli()) & (1<<48 - 1) // 10 chars hold 50 bits
	for i := 9; i >= 0; i-- {
		out[i] = idAlphabet[t&31]
		t >>= 5
	}
	c := seq & (1<<30 - 1) // 6 chars hold 30 bits: a billion IDs per millisecond
	for i := 15; i >= 10; i-- {
		out[i] = idAlphabet[c&31]
		c >>= 5
	}
	return string(out[:])
}

// ValidID reports whether s looks like an ID made by this package.
func ValidID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') || c == 'i' || c == 'l' || c == 'o' || c == 'u' {
			return false
		}
	}
	return true
}
