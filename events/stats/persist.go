package stats

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

var prefix = []byte("stats/")

// seriesKey is <type> NUL <dim letter> <value>.
func appendSeries(b []byte, k key) []byte {
	b = append(b, k.typ...)
	b = append(b, 0, dims[k.dim].letter)
	return append(b, k.val...)
}

func parseSeries(b []byte) (key, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 1 || i+2 > len(b) {
		return key{}, false
	}
	d, ok := dimByLetter(b[i+1])
	if !ok {
		return key{}, false
	}
	val := string(b[i+2:])
	if d == 0 && val != "" {
		return key{}, false
	}
	return key{typ: string(b[:i]), dim: uint8(d), val: val}, true
}

func chunkKey(kind byte, tag int64, k key) []byte {
	b := make([]byte, 0, len(prefix)+2+8+len(k.typ)+2+len(k.val))
	b = append(b, prefix...)
	b = append(b, kind, '/')
	b = binary.BigEndian.AppendUint64(b, uint64(tag))
	return appendSeries(b, k)
}

func encodeCounts(n []uint32) []byte {
	b := make([]byte, 0, len(n)+8)
	for _, v := range n {
		b = binary.AppendUvarint(b, uint64(v))
	}
	return b
}

func decodeCounts(b []byte, n []uint32) error {
	for i := range n {
		v, w := binary.Uvarint(b)
		if w <= 0 || v > 1<<32-1 {
			return errors.New("bad count")
		}
		n[i], b = uint32(v), b[w:]
	}
	if len(b) != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

type kv struct{ k, v []byte }

// dirtyRef remembers a chunk a flush took, to mark it again if the write
// fails.
type dirtyRef struct {
	c   *chunk
	tag int64
}

// Flush writes the chunks changed since the last flush and removes those
// that left the retention, in one transaction (several if it grows too big
// for one). With Options.Warmup set, it first samples the warm-up status.
// The flusher calls it every FlushEvery; Close calls it last.
func (s *Stats) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	now := s.clk.Now()
	if s.opts.Warmup != nil {
		s.RecordWarmup(s.opts.Warmup.Status(now))
	}
	s.mu.Lock()
	s.reap(now)
	var sets []kv
	var refs []dirtyRef
	for k, sr := range s.series {
		for _, r := range []struct {
			kind byte
			r    *ring
		}{{kindMinute, &sr.min}, {kindHour, &sr.hour}} {
			for _, c := range r.r.chunks {
				if c == nil || !c.dirty {
					continue
				}
				sets = append(sets, kv{chunkKey(r.kind, c.tag, k), encodeCounts(c.n)})
				refs = append(refs, dirtyRef{c, c.tag})
				c.dirty, c.saved = false, true
			}
		}
	}
	var dirtyDays []*dayHist
	for dk, h := range s.days {
		if !h.dirty {
			continue
		}
		v, err := h.marshal()
		if err != nil {
			continue
		}
		sets = append(sets, kv{warmupKey(dk), v})
		dirtyDays = append(dirtyDays, h)
		h.dirty = false
	}
	dels := s.dels
	s.dels = nil
	s.mu.Unlock()

	if s.db == nil || (len(sets) == 0 && len(dels) == 0) {
		return nil
	}
	err := s.write(sets, dels)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if err != nil {
		// Try again next time: the counts are absolute, so a later write of
		// the same chunk carries everything.
		for _, r := range refs {
			if r.c.tag == r.tag {
				r.c.dirty = true
			}
		}
		for _, h := range dirtyDays {
			h.dirty = true
		}
		s.dels = append(dels, s.dels...)
	}
	return err
}

// write applies dels, then sets.
func (s *Stats) write(sets []kv, dels [][]byte) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	do := func(f func() error) error {
		err := f()
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = f()
		}
		return err
	}
	for _, k := range dels {
		if err := do(func() error { return txn.Delete(k) }); err != nil {
			return err
		}
	}
	for _, e := range sets {
		if err := do(func() error { return txn.Set(e.k, e.v) }); err != nil {
			return err
		}
	}
	return txn.Commit()
}

// load reads what an earlier run wrote. Chunks that left the retention
// meanwhile, and records it cannot read, are deleted at the first flush.
func (s *Stats) load() error {
	now := s.clk.Now()
	oh, od := s.oldestHour(now), s.oldestDay(now)
	var bad [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			k := item.Key()
			rest := k[len(prefix):]
			if len(rest) < 2 || rest[1] != '/' {
				bad = append(bad, item.KeyCopy(nil))
				continue
			}
			kind, rest := rest[0], rest[2:]
			var ok bool
			err := item.Value(func(v []byte) error {
				switch kind {
				case kindMinute, kindHour:
					ok = s.loadChunk(kind, rest, v, oh, od)
				case kindWarmup:
					ok = s.loadDays(rest, v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !ok {
				bad = append(bad, item.KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.dels = append(s.dels, bad...)
	if len(bad) > 0 {
		s.log.Info("statistics: dropping old or unreadable records", "records", len(bad))
	}
	return nil
}

// loadChunk restores one chunk; false means "delete this record".
func (s *Stats) loadChunk(kind byte, rest, v []byte, oh, od int64) bool {
	if len(rest) < 8 {
		return false
	}
	tag := int64(binary.BigEndian.Uint64(rest))
	k, ok := parseSeries(rest[8:])
	if !ok {
		return false
	}
	if (kind == kindMinute && tag < oh) || (kind == kindHour && tag < od) {
		return false
	}
	sr := s.seriesFor(k, false)
	if sr.k != k {
		return false // over MaxValues now
	}
	r := &sr.min
	if kind == kindHour {
		r = &sr.hour
	}
	c := &chunk{tag: tag, saved: true, n: make([]uint32, r.width)}
	if err := decodeCounts(v, c.n); err != nil {
		return false
	}
	i := floorMod(tag, int64(len(r.chunks)))
	if old := r.chunks[i]; old != nil {
		if old.tag > tag {
			return false
		}
		s.dels = append(s.dels, chunkKey(kind, old.tag, k))
	}
	r.chunks[i] = c
	return true
}
