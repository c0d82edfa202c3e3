package warmup

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys in the shared badger store. The warmup package owns the prefix
// "warmup/" and nothing else.
//
//	warmup/egress/<egress>       egressRec: anchor, last sending day, operator pause
//	warmup/lane/<egress>/<site>  laneRec: plan day, today's counters, state
//
// Values are JSON: a few hundred bytes, written at most once a second per
// key that changed, and readable when debugging a store.
const (
	storePrefix  = "warmup/"
	egressPrefix = storePrefix + "egress/"
	lanePrefix   = storePrefix + "lane/"
)

func laneKey(egress, site string) []byte {
	return []byte(lanePrefix + egress + "/" + site)
}

// egressRec is the persisted state of one egress.
type egressRec struct {
	V           int    `json:"v"`
	Gen         uint64 `json:"gen"`
	AnchorDate  int32  `json:"anchor_date"`
	AnchorDay   int    `json:"anchor_day"`
	ConfigStart string `json:"config_start"` // egress.start the anchor came from, to notice a change
	LastSent    int32  `json:"last_sent,omitempty"`
	PausedUntil int64  `json:"paused_until,omitempty"`
}

// loadEgress reads an egress's record, or starts one: day 1 on the
// configured start date, or today. A start date changed in the config wins
// over the stored anchor (and over an operator's SetDay made before it).
func (c *Controller) loadEgress(eg *egress, today int32) error {
	var rec egressRec
	found := false
	err := c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(eg.key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if err := json.Unmarshal(v, &rec); err != nil {
				c.setErr(fmt.Errorf("warmup: unreadable record %q, starting it afresh: %v", eg.key, err))
				rec = egressRec{}
				return nil
			}
			found = true
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("warmup: reading %s: %w", eg.key, err)
	}
	warm := eg.plan == nil
	if found && rec.ConfigStart == eg.cfg.Start {
		eg.anchor.Store(c.newAnchor(rec.Gen, rec.AnchorDate, rec.AnchorDay, warm))
	} else {
		date := today
		if d, ok := c.cal.parse(eg.cfg.Start); ok {
			date = d
		}
		eg.anchor.Store(c.newAnchor(rec.Gen+1, date, 1, warm))
		eg.dirty.Store(true)
	}
	eg.lastSent.Store(rec.LastSent)
	eg.pausedUntil.Store(rec.PausedUntil)
	return nil
}

func (eg *egress) record() egressRec {
	a := eg.anchor.Load()
	return egressRec{V: 1, Gen: a.gen, AnchorDate: a.date, AnchorDay: a.day, ConfigStart: eg.cfg.Start,
		LastSent: eg.lastSent.Load(), PausedUntil: eg.pausedUntil.Load()}
}

// loadLane reads a lane's record. A missing record is not an error; an
// unreadable one is reported through Err and replaced.
func (c *Controller) loadLane(key []byte) (laneRec, bool) {
	var rec laneRec
	found := false
	err := c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("unreadable record, starting it afresh: %v", err)
			}
			found = true
			return nil
		})
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		c.setErr(fmt.Errorf("warmup: reading %q: %w", key, err))
	}
	return rec, found
}

type kv struct{ k, v []byte }

// Flush writes every changed counter and state to the store in one
// transaction (several if it grows too big). Run calls it every second;
// Close calls it last. A crash loses at most the reservations of the last
// second: values are absolute, so nothing is ever counted twice.
func (c *Controller) Flush() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.dmu.Lock()
	list := c.dirty
	c.dirty = nil
	c.dmu.Unlock()
	batch := make([]kv, 0, len(list)+len(c.egresses))
	var flushed []*lane
	for _, l := range list {
		l.mu.Lock()
		if l.dirty {
			l.dirty = false
			v, err := json.Marshal(&l.rec)
			if err == nil {
				batch = append(batch, kv{l.key, v})
				flushed = append(flushed, l)
			}
		}
		l.mu.Unlock()
	}
	var egs []*egress
	for _, eg := range c.egresses {
		if eg.dirty.Swap(false) {
			eg.mu.Lock()
			v, _ := json.Marshal(eg.record())
			eg.mu.Unlock()
			batch = append(batch, kv{eg.key, v})
			egs = append(egs, eg)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := c.write(batch, nil); err != nil {
		for _, l := range flushed {
			l.mu.Lock()
			l.markDirty()
			l.mu.Unlock()
		}
		for _, eg := range egs {
			eg.dirty.Store(true)
		}
		return fmt.Errorf("warmup: saving counters: %w", err)
	}
	return nil
}

func (c *Controller) write(sets []kv, dels [][]byte) error {
	txn := c.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	do := func(f func() error) error {
		err := f()
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = c.db.NewTransaction(true)
			err = f()
		}
		return err
	}
	for _, e := range sets {
		if err := do(func() error { return txn.Set(e.k, e.v) }); err != nil {
			return err
		}
	}
	for _, k := range dels {
		if err := do(func() error { return txn.Delete(k) }); err != nil {
			return err
		}
	}
	return txn.Commit()
}

// forget deletes the records of lanes that have sent nothing for longer
// than warmup.idle_restart and are not in memory: they would be started
// afresh anyway (see newLane), and a store that remembers every small
// domain's MX set forever only grows.
func (c *Controller) forget(now time.Time) error {
	if c.idleDays <= 0 {
		return nil
	}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	today := c.cal.date(now)
	var dels [][]byte
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(lanePrefix), PrefetchValues: false})
		defer it.Close()
		for it.Seek([]byte(lanePrefix)); it.ValidForPrefix([]byte(lanePrefix)); it.Next() {
			item := it.Item()
			var rec laneRec
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				continue
			}
			last := rec.LastSent
			if last == 0 {
				last = rec.Date
			}
			if today-last <= c.idleDays || rec.State == StatePaused {
				continue
			}
			egName, site, _ := strings.Cut(strings.TrimPrefix(string(item.Key()), lanePrefix), "/")
			if c.inMemory(egName, site) {
				continue
			}
			dels = append(dels, item.KeyCopy(nil))
		}
		return nil
	})
	if err != nil || len(dels) == 0 {
		return err
	}
	return c.write(nil, dels)
}

func (c *Controller) inMemory(egName, site string) bool {
	eg := c.egressByName[egName]
	if eg == nil {
		return false
	}
	c.smu.RLock()
	s := c.sites[site]
	c.smu.RUnlock()
	return s != nil && s.lanes[eg.idx].Load() != nil
}

// storedLanes lists the records of an egress's lanes (all egresses when
// name is ""), for status.
func (c *Controller) storedLanes(name string) (map[string]map[string]laneRec, error) {
	out := map[string]map[string]laneRec{}
	p := []byte(lanePrefix)
	if name != "" {
		p = []byte(lanePrefix + name + "/")
	}
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			item := it.Item()
			var rec laneRec
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				continue
			}
			egName, site, _ := strings.Cut(strings.TrimPrefix(string(item.Key()), lanePrefix), "/")
			if out[egName] == nil {
				out[egName] = map[string]laneRec{}
			}
			out[egName][site] = rec
		}
		return nil
	})
	return out, err
}
