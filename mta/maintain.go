package mta

import (
	"context"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maintain runs the periodic housekeeping: queue gauges for metrics, and
// badger's value-log garbage collection so disk use falls back after the
// queue drains (badger never reclaims it by itself).
func (srv *Server) maintain(ctx context.Context) {
	defer srv.recoverPanic("maintenance")
	gauges := time.NewTicker(15 * time.Second)
	defer gauges.Stop()
	gc := time.NewTicker(srv.cfg.Queue.GCInterval.D())
	defer gc.Stop()
	srv.updateGauges()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gauges.C:
			srv.updateGauges()
		case <-gc.C:
			srv.collectGarbage()
		}
	}
}

func (srv *Server) updateGauges() {
	total, held, err := srv.store.Count()
	if err != nil {
		return
	}
	srv.metrics.queueSize.WithLabelValues("all").Set(float64(total))
	srv.metrics.queueSize.WithLabelValues("held").Set(float64(held))
	srv.metrics.queueSize.WithLabelValues("active").Set(float64(srv.sched.inHand.Load()))
	srv.metrics.pendingRecipients.Set(float64(srv.store.Counts().Pending))
}

// collectGarbage rewrites value-log files that are mostly garbage, one at a
// time, until there is nothing left worth rewriting.
func (srv *Server) collectGarbage() {
	for i := 0; i < 16; i++ {
		err := srv.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || err != nil {
			if err != nil && !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				srv.log.Warn("value log garbage collection failed", "err", err)
			}
			return
		}
	}
}
