package queue

import (
	"encoding/binary"
	"time"
)

var (
	prefixMsg        = []byte("q/m/")
	prefixSched      = []byte("q/s/")
	prefixLease      = []byte("q/l/")
	prefixHeld       = []byte("q/h/")
	prefixQuarantine = []byte("q/x/")
	prefixHoldRule   = []byte("q/r/")
)

func msgKey(id string) []byte        { return append(append([]byte(nil), prefixMsg...), id...) }
func leaseKey(id string) []byte      { return append(append([]byte(nil), prefixLease...), id...) }
func heldKey(id string) []byte       { return append(append([]byte(nil), prefixHeld...), id...) }
func quarantineKey(id string) []byte { return append(append([]byte(nil), prefixQuarantine...), id...) }

// schedKey sorts by due time, then by id. Times before 1970 clamp to zero.
func schedKey(due time.Time, id string) []byte {
	k := make([]byte, 0, len(prefixSched)+8+len(id))
	k = append(k, prefixSched...)
	ns := due.UnixNano()
	if ns < 0 {
		ns = 0
	}
	k = binary.BigEndian.AppendUint64(k, uint64(ns))
	return append(k, id...)
}

func parseSchedKey(k []byte) (time.Time, string, bool) {
	if len(k) < len(prefixSched)+8 {
		return time.Time{}, "", false
	}
	ns := binary.BigEndian.Uint64(k[len(prefixSched):])
	return time.Unix(0, int64(ns)), string(k[len(prefixSched)+8:]), true
}
