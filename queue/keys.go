package queue

import (
	"encoding/binary"
	"time"
)

var (
	prefixMsg        = []byte("q/m/")
	prefixSched      = []byte("q/s/")
	prefixHeld       = []byte("q/h/")
	prefixQuarantine = []byte("q/x/")
	prefixHoldRule   = []byte("q/r/")
	prefixLane       = []byte("q/w/")
)

// laneKey orders a lane's waiting messages by priority (highest first), then
// by age: q/w/<lane> 0x00 <255-priority> <created, 8 bytes> <id>.
func laneKey(lane string, m *Message) []byte {
	k := make([]byte, 0, len(prefixLane)+len(lane)+1+1+8+len(m.ID))
	k = append(k, prefixLane...)
	k = append(k, lane...)
	k = append(k, 0, byte(255-min(max(m.Priority, 0), 255)))
	ns := m.Created.UnixNano()
	if ns < 0 {
		ns = 0
	}
	k = binary.BigEndian.AppendUint64(k, uint64(ns))
	return append(k, m.ID...)
}

func lanePrefix(lane string) []byte {
	return append(append(append([]byte(nil), prefixLane...), lane...), 0)
}

func msgKey(id string) []byte        { return append(append([]byte(nil), prefixMsg...), id...) }
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
