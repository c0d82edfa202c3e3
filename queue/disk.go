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
type diskGuard struct {
	dir string
	min int64

	mu      sync.Mutex
	checked time.Time
	free    int64
	// statfs is replaceable in tests.
	statfs func(dir string) (int64, error)
}

func newDiskGuard(dir string, min int64) *diskGuard {
	return &diskGuard{dir: dir, min: min, statfs: freeBytes}
}

// check returns ErrDiskFull when free space is below the minimum. The
// filesystem is asked at most once a second.
func (g *diskGuard) check(now time.Time) error {
	if g.min <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.checked) >= time.Second || now.Before(g.checked) {
		free, err := g.statfs(g.dir)
		if err != nil {
			return fmt.Errorf("queue: checking free space: %w", err)
		}
		g.free, g.checked = free, now
	}
	if g.free < g.min {
		return fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, g.free, g.min)
	}
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
