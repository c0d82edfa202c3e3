package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The spool keeps message bodies in append-only segment files
// (<dir>/spool/seg-<n>.dat). Only the committer goroutine appends; any
// goroutine may read. Each body is preceded by a small header so a segment can
// be read on its own if the envelope store is ever lost:
//
//	"KLB1" | id length (1 byte) | id | body length (4) | CRC-32C of body (4) | body
//
// A segment is deleted once no envelope refers to it any more, so disk use
// falls back as the queue drains.

const (
	segMagic       = "KLB1"
	defaultSegSize = 64 << 20
)

type segment struct {
	id        uint32
	f         *os.File
	size      int64 // bytes written
	live      int   // envelopes that point into it
	liveBytes int64
}

type spool struct {
	dir     string
	maxSize int64

	mu     sync.Mutex
	segs   map[uint32]*segment
	active *segment
	nextID uint32

	buf []byte // the committer's write buffer, reused
	// syncHook, when set (tests), runs after every data sync.
	syncHook func()
}

func openSpool(dir string, maxSize int64) (*spool, error) {
	if maxSize <= 0 {
		maxSize = defaultSegSize
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sp := &spool{dir: dir, maxSize: maxSize, segs: map[uint32]*segment{}, nextID: 1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		id, ok := parseSegName(e.Name())
		if !ok {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			sp.close()
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			sp.close()
			return nil, err
		}
		sp.segs[id] = &segment{id: id, f: f, size: st.Size()}
		if id >= sp.nextID {
			sp.nextID = id + 1
		}
	}
	return sp, nil
}

func segName(id uint32) string { return fmt.Sprintf("seg-%08d.dat", id) }

func parseSegName(name string) (uint32, bool) {
	if !strings.HasPrefix(name, "seg-") || !strings.HasSuffix(name, ".dat") {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".dat"), 10, 32)
	return uint32(n), err == nil
}

// pendingBody is one body waiting in a commit batch.
type pendingBody struct {
	id   string
	body []byte
	ref  *BodyRef // filled in by appendBatch
}

// appendBatch writes every body of a batch with as few writes as possible and
// syncs the data once per segment touched. Only the committer calls it. The
// lock is not held while writing and syncing, so readers are never stalled
// behind a sync.
func (sp *spool) appendBatch(items []pendingBody) error {
	start := 0
	for start < len(items) {
		sp.mu.Lock()
		err := sp.ensureActive()
		seg := sp.active
		sp.mu.Unlock()
		if err != nil {
			return err
		}
		buf := sp.buf[:0]
		off := seg.size
		i := start
		for ; i < len(items); i++ {
			it := items[i]
			hdr := int64(len(segMagic) + 1 + len(it.id) + 8)
			need := hdr + int64(len(it.body))
			// A body that does not fit goes to the next segment, unless
			// this one is still empty (a huge body gets a segment of its own).
			if off > 0 && off+need > sp.maxSize {
				break
			}
			crc := crc32.Checksum(it.body, castagnoli)
			buf = append(buf, segMagic...)
			buf = append(buf, byte(len(it.id)))
			buf = append(buf, it.id...)
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(it.body)))
			buf = binary.BigEndian.AppendUint32(buf, crc)
			buf = append(buf, it.body...)
			*it.ref = BodyRef{Seg: seg.id, Off: off + hdr, Len: int64(len(it.body)), CRC: crc}
			off += need
		}
		if i > start {
			if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
				return fmt.Errorf("spool write %s: %w", segName(seg.id), err)
			}
			if err := fdatasync(seg.f); err != nil {
				return fmt.Errorf("spool sync %s: %w", segName(seg.id), err)
			}
			if sp.syncHook != nil {
				sp.syncHook()
			}
			// Count the new bodies as referenced at once, so a rotation
			// in this same batch cannot delete the segment under them.
			// The committer unrefs them if their envelopes fail to commit.
			sp.mu.Lock()
			seg.size = off
			for _, it := range items[start:i] {
				seg.live++
				seg.liveBytes += it.ref.Len
			}
			sp.mu.Unlock()
		}
		if cap(buf) <= 8<<20 {
			sp.buf = buf[:0]
		} else {
			sp.buf = nil // do not keep a huge buffer after one huge message
		}
		if i < len(items) {
			sp.mu.Lock()
			sp.rotate()
			sp.mu.Unlock()
		}
		start = i
	}
	return nil
}

// ensureActive opens a new active segment when there is none; the caller
// holds mu. The directory is synced so the new file itself survives a power loss before any envelope
// points into it.
func (sp *spool) ensureActive() error {
	if sp.active != nil {
		return nil
	}
	id := sp.nextID
	sp.nextID++
	path := filepath.Join(sp.dir, segName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(sp.dir); err != nil {
		f.Close()
		return err
	}
	seg := &segment{id: id, f: f}
	sp.segs[id] = seg
	sp.active = seg
	return nil
}

// rotate seals the active segment; it is deleted once nothing refers to it.
// The caller holds mu.
func (sp *spool) rotate() {
	seg := sp.active
	sp.active = nil
	if seg != nil && seg.live <= 0 {
		sp.removeLocked(seg)
	}
}

// checkRef reports whether ref lies inside an existing segment.
func (sp *spool) checkRef(ref BodyRef) error {
	sp.mu.Lock()
	seg := sp.segs[ref.Seg]
	sp.mu.Unlock()
	if seg == nil {
		return fmt.Errorf("%w: body segment %s is missing", ErrCorrupt, segName(ref.Seg))
	}
	if ref.Len < 0 || ref.Off < 0 || ref.Off+ref.Len > seg.size {
		return fmt.Errorf("%w: body at %d+%d lies beyond the end of %s (%d bytes)", ErrCorrupt, ref.Off, ref.Len, segName(ref.Seg), seg.size)
	}
	return nil
}

// readBody reads and checks the body at ref into buf (grown as needed).
func (sp *spool) readBody(ref BodyRef, buf []byte) ([]byte, error) {
	if err := sp.checkRef(ref); err != nil {
		return nil, err
	}
	sp.mu.Lock()
	seg := sp.segs[ref.Seg]
	sp.mu.Unlock()
	if int64(cap(buf)) < ref.Len {
		buf = make([]byte, ref.Len)
	}
	buf = buf[:ref.Len]
	if _, err := seg.f.ReadAt(buf, ref.Off); err != nil && !(errors.Is(err, io.EOF) && ref.Len == 0) {
		return nil, fmt.Errorf("spool read %s: %w", segName(ref.Seg), err)
	}
	if crc := crc32.Checksum(buf, castagnoli); crc != ref.CRC {
		return nil, fmt.Errorf("%w: body checksum %08x, want %08x", ErrCorrupt, crc, ref.CRC)
	}
	return buf, nil
}

// ref and unref count the envelopes that point into a segment.
func (sp *spool) ref(r BodyRef) {
	sp.mu.Lock()
	if seg := sp.segs[r.Seg]; seg != nil {
		seg.live++
		seg.liveBytes += r.Len
	}
	sp.mu.Unlock()
}

func (sp *spool) unref(r BodyRef) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	seg := sp.segs[r.Seg]
	if seg == nil {
		return
	}
	seg.live--
	seg.liveBytes -= r.Len
	if seg.live <= 0 && seg != sp.active {
		sp.removeLocked(seg)
	}
}

func (sp *spool) removeLocked(seg *segment) {
	delete(sp.segs, seg.id)
	seg.f.Close()
	os.Remove(filepath.Join(sp.dir, segName(seg.id)))
}

// dropUnreferenced removes every sealed segment no envelope refers to; Open
// calls it after counting references.
func (sp *spool) dropUnreferenced() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := 0
	for _, seg := range sp.segs {
		if seg.live <= 0 && seg != sp.active {
			sp.removeLocked(seg)
			n++
		}
	}
	return n
}

// SpoolStats describes the body spool.
type SpoolStats struct {
	Segments  int   `json:"segments"`
	Bytes     int64 `json:"bytes"`
	LiveBytes int64 `json:"live_bytes"`
}

func (sp *spool) stats() SpoolStats {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var st SpoolStats
	ids := make([]uint32, 0, len(sp.segs))
	for id, seg := range sp.segs {
		ids = append(ids, id)
		st.Bytes += seg.size
		st.LiveBytes += seg.liveBytes
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	st.Segments = len(ids)
	return st
}

func (sp *spool) close() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var first error
	for _, seg := range sp.segs {
		if err := seg.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	sp.segs = map[uint32]*segment{}
	sp.active = nil
	return first
}

func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
