package queue

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// writeReq is one writer's share of a commit batch.
type writeReq struct {
	bodies []pendingBody               // appended to the spool before the commit
	apply  func(txn *badger.Txn) error // envelope changes, run on the committer
	after  func()                      // runs once the batch is durable
	done   chan error
}

const (
	maxBatchReqs  = 512
	maxBatchBytes = 16 << 20
)

func (s *Store) submit(ctx context.Context, req *writeReq) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	// Once handed over, the request is always completed: waiting for it even
	// when ctx ends keeps a caller from reporting failure for a write that
	// then succeeds.
	return <-req.done
}

// committer is the single goroutine that writes the queue. Every request that
// arrives while a batch is being synced joins the next batch, so concurrent
// writers share one fdatasync and one synced commit (group commit).
func (s *Store) committer() {
	defer close(s.done)
	batch := make([]*writeReq, 0, maxBatchReqs)
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			// Drain what was already handed over, then stop.
			for {
				select {
				case r := <-s.reqs:
					s.commitBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		size := bodyBytes(first)
	fill:
		for len(batch) < maxBatchReqs && size < maxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += bodyBytes(r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
		for i := range batch {
			batch[i] = nil
		}
	}
}

func bodyBytes(r *writeReq) int {
	n := 0
	for _, b := range r.bodies {
		n += len(b.body)
	}
	return n
}

func (s *Store) commitBatch(batch []*writeReq) {
	err := s.writeBatch(batch)
	if err != nil {
		s.log.Error("queue write failed", "err", err, "requests", len(batch))
	} else {
		s.commits.Add(1)
		s.committed.Add(int64(len(batch)))
		if s.commitHook != nil {
			s.commitHook(len(batch))
		}
	}
	for _, r := range batch {
		if err == nil && r.after != nil {
			r.after()
		}
		r.done <- err
	}
}

// writeBatch appends the batch's bodies (one write, one fdatasync), then
// applies every request to one transaction and commits it (SyncWrites makes
// the commit durable). Bodies first: a committed record never points at bytes
// that are not on disk.
func (s *Store) writeBatch(batch []*writeReq) error {
	var bodies []pendingBody
	for _, r := range batch {
		bodies = append(bodies, r.bodies...)
	}
	if err := s.sp.appendBatch(bodies); err != nil {
		return err
	}
	err := s.applyAll(batch)
	if err != nil {
		// The envelopes are not stored: the spool space they took is free.
		for _, b := range bodies {
			if b.ref.Seg != 0 {
				s.sp.unref(*b.ref)
			}
		}
	}
	return err
}

func (s *Store) applyAll(batch []*writeReq) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, r := range batch {
		if r.apply == nil {
			continue
		}
		err := r.apply(txn)
		if errors.Is(err, badger.ErrTxnTooBig) {
			// Commit what fits and go on in a new transaction; the batch
			// is acknowledged only after the last commit.
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = r.apply(txn)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}
