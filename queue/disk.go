package queue

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// diskGuard refuses new mail before the data disk fills up. badger maps its
// files into memory and dies with SIGBUS when a write finds no space, and
// recover() cannot catch that; so kiln stops accepting while there is still
// room, the way Postfix's queue_minfree answers 452.
//
// The filesystem is asked at most once a second, or after restatBytes have
// been admitted, and what was admitted since is taken off its answer: mail
// arriving at tens of megabytes a second cannot overrun the minimum between
// two looks.
type diskGuard struct {
	dir string
	min int64

	mu      sync.Mutex
	checked time.Time
	free    int64 // at the last look
	spent   int64 // admitted since the last look
	// statfs is replaceable in tests.
	statfs func(dir string) (int64, error)
}

// restatBytes is how much the guard admits before it looks again; envelope
// is what a message costs besides its body (its record, the write-ahead log
// and the index keys, with room to spare).
const (
	restatBytes = 8 << 20
	envelope    = 4 << 10
)

func newDiskGuard(dir string, min int64) *diskGuard {
	return &diskGuard{dir: dir, min: min, statfs: freeBytes}
}

// check admits a message of size bytes, or returns ErrDiskFull when taking
// it would leave less than the minimum free.
func (g *diskGuard) check(now time.Time, size int64) error {
	if g.min <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.checked) >= time.Second || now.Before(g.checked) || g.spent >= restatBytes {
		free, err := g.statfs(g.dir)
		if err != nil {
			return fmt.Errorf("queue: checking free space: %w", err)
		}
		g.free, g.spent, g.checked = free, 0, now
	}
	cost := size + envelope
	if left := g.free - g.spent - cost; left < g.min {
		return fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, g.free-g.spent, g.min)
	}
	g.spent += cost
	return nil
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// FreeDisk reports the free bytes on the queue's filesystem.
func (s *Store) FreeDisk() (int64, error) { return freeBytes(s.opts.Dir) }
