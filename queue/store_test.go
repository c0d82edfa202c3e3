package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	dir string
	db  *badger.DB
	s   *Store
	clk *clock.Fake
}

func openEnv(t testing.TB, dir string, clk *clock.Fake, segSize int64) *env {
	t.Helper()
	db, err := OpenDB(filepath.Join(dir, "db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(db, Options{Dir: dir, Clock: clk, SegmentSize: segSize, Log: quiet})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return &env{dir: dir, db: db, s: s, clk: clk}
}

func newEnv(t testing.TB) *env {
	e := openEnv(t, t.TempDir(), clock.NewFake(t0), 0)
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.s != nil {
		e.s.Close()
		e.s = nil
	}
	if e.db != nil {
		e.db.Close()
		e.db = nil
	}
}

func (e *env) reopen(t testing.TB, segSize int64) {
	e.close()
	n := openEnv(t, e.dir, e.clk, segSize)
	e.db, e.s = n.db, n.s
}

func msg(rcpts ...string) *Message {
	m := &Message{From: "app@sender.example", Account: "app"}
	for _, r := range rcpts {
		m.Rcpts = append(m.Rcpts, Rcpt{Addr: r})
	}
	return m
}

func TestEnqueueStoresEnvelopeAndBody(t *testing.T) {
	e := newEnv(t)
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	m := msg("a@x.example", "b@y.example")
	if err := e.s.Enqueue(context.Background(), m, body); err != nil {
		t.Fatal(err)
	}
	if !ValidID(m.ID) {
		t.Fatalf("bad id %q", m.ID)
	}
	got, err := e.s.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != m.From || len(got.Rcpts) != 2 || got.Rcpts[1].State != RcptPending || !got.Expires.Equal(t0.Add(5*24*time.Hour)) {
		t.Errorf("record = %+v", got)
	}
	b, err := e.s.ReadBody(got, nil)
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("body = %q, %v", b, err)
	}
	due, err := e.s.Due(time.Time{}, t0, 10, nil)
	if err != nil || len(due) != 1 || due[0].ID != m.ID {
		t.Fatalf("due = %v, %v", due, err)
	}
}

// The write is on disk before Enqueue returns: the body's fdatasync and the
// synced commit both happen before the caller (which then answers 250) is
// released. The commit hook runs after the batch is durable and before any
// writer is told; blocking it must keep Enqueue from returning.
func TestEnqueueReturnsOnlyAfterSync(t *testing.T) {
	e := newEnv(t)
	var syncs atomic.Int32
	release := make(chan struct{})
	committed := make(chan int, 1)
	e.s.SetSyncHook(func() { syncs.Add(1) })
	e.s.SetCommitHook(func(n int) {
		committed <- n
		<-release
	})
	returned := make(chan error, 1)
	go func() { returned <- e.s.Enqueue(context.Background(), msg("a@x.example"), []byte("x\r\n")) }()
	<-committed
	if syncs.Load() != 1 {
		t.Fatalf("data syncs before the commit = %d, want 1", syncs.Load())
	}
	select {
	case <-returned:
		t.Fatal("Enqueue returned before its batch was acknowledged")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
}

// Concurrent writers share syncs: far fewer commits than messages.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	var first sync.Once
	e.s.SetCommitHook(func(int) { first.Do(func() { <-block }) })
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.s.Enqueue(context.Background(), msg("a@x.example"), bytes.Repeat([]byte("x"), 4096)); err != nil {
				t.Error(err)
			}
		}()
	}
	// Let the writers pile up behind the first batch, then release it.
	time.Sleep(100 * time.Millisecond)
	close(block)
	wg.Wait()
	st := e.s.Stats()
	if st.Enqueued != n {
		t.Fatalf("enqueued %d", st.Enqueued)
	}
	if st.Commits > n/4 {
		t.Errorf("%d commits for %d concurrent messages: writers are not sharing syncs", st.Commits, n)
	}
	t.Logf("%d messages in %d synced commits", n, st.Commits)
}

func TestLeaseSaveAndRecovery(t *testing.T) {
	e := newEnv(t)
	m := msg("a@x.example")
	if err := e.s.Enqueue(context.Background(), m, []byte("body\r\n")); err != nil {
		t.Fatal(err)
	}
	// The scheduler takes it: lease it an hour ahead.
	m.Leased, m.Due = true, t0.Add(time.Hour)
	if err := e.s.Save(m); err != nil {
		t.Fatal(err)
	}
	if due, _ := e.s.Due(time.Time{}, t0.Add(time.Minute), 10, nil); len(due) != 0 {
		t.Fatalf("leased message is due: %v", due)
	}
	// Crash (no clean finish of the attempt): reopen; the lease is turned
	// into "due now".
	e.clk.Advance(time.Minute)
	e.reopen(t, 0)
	if rep := e.s.Recovered(); rep.Messages != 1 || rep.Leased != 1 {
		t.Fatalf("recovery = %+v", rep)
	}
	due, err := e.s.Due(time.Time{}, e.clk.Now(), 10, nil)
	if err != nil || len(due) != 1 || due[0].Leased {
		t.Fatalf("after recovery due = %+v, %v", due, err)
	}
	// A deferred message is not due before its time.
	d := due[0]
	d.Rcpts[0].Next = e.clk.Now().Add(10 * time.Minute)
	d.Due = d.NextDue()
	if err := e.s.Save(d); err != nil {
		t.Fatal(err)
	}
	if due, _ := e.s.Due(time.Time{}, e.clk.Now(), 10, nil); len(due) != 0 {
		t.Fatalf("deferred message due early")
	}
	if due, _ := e.s.Due(time.Time{}, e.clk.Now().Add(10*time.Minute), 10, nil); len(due) != 1 {
		t.Fatalf("deferred message not due at its time")
	}
}

func TestDeleteFreesSpool(t *testing.T) {
	e := openEnv(t, t.TempDir(), clock.NewFake(t0), 16<<10)
	defer e.close()
	body := bytes.Repeat([]byte("y"), 5000)
	var ms []*Message
	for i := 0; i < 10; i++ {
		m := msg(fmt.Sprintf("r%d@x.example", i))
		if err := e.s.Enqueue(context.Background(), m, body); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if st := e.s.Stats().Spool; st.Segments < 3 {
		t.Fatalf("expected several segments, got %+v", st)
	}
	for _, m := range ms {
		if err := e.s.Delete(m); err != nil {
			t.Fatal(err)
		}
	}
	st := e.s.Stats().Spool
	if st.Segments > 1 || st.LiveBytes != 0 {
		t.Fatalf("after draining: %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "spool", "seg-*"))
	if len(files) > 1 {
		t.Fatalf("segment files left: %v", files)
	}
	if _, err := e.s.Get(ms[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted message still there: %v", err)
	}
	if due, _ := e.s.Due(time.Time{}, t0.Add(time.Hour), 100, nil); len(due) != 0 {
		t.Fatalf("deleted messages still due: %d", len(due))
	}
	// A Save after the Delete must not bring the record back.
	if err := e.s.Save(ms[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Get(ms[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("Save resurrected a deleted message")
	}
}

func TestCorruptRecordIsQuarantined(t *testing.T) {
	e := newEnv(t)
	good, bad := msg("a@x.example"), msg("b@x.example")
	for _, m := range []*Message{good, bad} {
		if err := e.s.Enqueue(context.Background(), m, []byte("body\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	e.s.Close()
	// Flip bytes in the middle of one record.
	err := e.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(msgKey(bad.ID))
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)/2] ^= 0xff
		return txn.Set(msgKey(bad.ID), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t, 0)
	if rep := e.s.Recovered(); rep.Quarantined != 1 || rep.Messages != 1 {
		t.Fatalf("recovery = %+v", rep)
	}
	q, err := e.s.Quarantine()
	if err != nil || len(q) != 1 || q[0].ID != bad.ID || q[0].Reason == "" {
		t.Fatalf("quarantine = %+v, %v", q, err)
	}
	due, _ := e.s.Due(time.Time{}, t0, 10, nil)
	if len(due) != 1 || due[0].ID != good.ID {
		t.Fatalf("due after quarantine = %v", due)
	}
}

func TestMissingBodyIsQuarantined(t *testing.T) {
	e := newEnv(t)
	m := msg("a@x.example")
	if err := e.s.Enqueue(context.Background(), m, []byte("body\r\n")); err != nil {
		t.Fatal(err)
	}
	e.close()
	files, _ := filepath.Glob(filepath.Join(e.dir, "spool", "seg-*"))
	for _, f := range files {
		if err := os.Truncate(f, 3); err != nil {
			t.Fatal(err)
		}
	}
	e.reopen(t, 0)
	if rep := e.s.Recovered(); rep.Quarantined != 1 {
		t.Fatalf("recovery = %+v", rep)
	}
}

func TestBodyChecksumCaught(t *testing.T) {
	e := newEnv(t)
	m := msg("a@x.example")
	if err := e.s.Enqueue(context.Background(), m, []byte("a body of some length\r\n")); err != nil {
		t.Fatal(err)
	}
	f, _ := filepath.Glob(filepath.Join(e.dir, "spool", "seg-*"))
	fh, err := os.OpenFile(f[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("XX"), m.Body.Off+2)
	fh.Close()
	if _, err := e.s.ReadBody(m, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a damaged body: %v", err)
	}
}

func TestHoldRules(t *testing.T) {
	e := newEnv(t)
	m := msg("a@gmail.example")
	m.Account = "news"
	r, err := e.s.AddHold(HoldRule{RecipientDomain: "GMAIL.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.s.HoldMatch(m); !ok {
		t.Fatal("recipient-domain rule does not match")
	}
	if _, ok := e.s.HoldMatch(msg("b@other.example")); ok {
		t.Fatal("rule matches another domain")
	}
	again, _ := e.s.AddHold(HoldRule{RecipientDomain: "gmail.example"})
	if again.ID != r.ID {
		t.Fatal("the same rule was added twice")
	}
	e.reopen(t, 0)
	if len(e.s.HoldRules()) != 1 {
		t.Fatalf("rules after reopen: %v", e.s.HoldRules())
	}
	// Parking a message moves it out of the schedule.
	if err := e.s.Enqueue(context.Background(), m, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	m.Held = true
	if err := e.s.Save(m); err != nil {
		t.Fatal(err)
	}
	if due, _ := e.s.Due(time.Time{}, t0.Add(time.Hour), 10, nil); len(due) != 0 {
		t.Fatal("held message is due")
	}
	if ids, _ := e.s.HeldIDs(); len(ids) != 1 || ids[0] != m.ID {
		t.Fatalf("held ids = %v", ids)
	}
	gone, err := e.s.RemoveHolds(HoldRule{RecipientDomain: "gmail.example"}, false)
	if err != nil || len(gone) != 1 {
		t.Fatalf("remove = %v, %v", gone, err)
	}
	// An empty rule pauses everything.
	if _, err := e.s.AddHold(HoldRule{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.s.HoldMatch(msg("z@anything.example")); !ok {
		t.Fatal("empty rule does not hold everything")
	}
}

func TestDiskGuard(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDB(filepath.Join(dir, "db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := clock.NewFake(t0)
	s, err := Open(db, Options{Dir: dir, Clock: clk, MinFreeDisk: 1 << 30, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	free := int64(100 << 20)
	s.SetStatfs(func(string) (int64, error) { return free, nil })
	if err := s.Enqueue(context.Background(), msg("a@x.example"), []byte("x")); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("enqueue with 100 MiB free and 1 GiB required: %v", err)
	}
	free = 2 << 30
	clk.Advance(2 * time.Second)
	if err := s.Enqueue(context.Background(), msg("a@x.example"), []byte("x")); err != nil {
		t.Fatalf("enqueue after space came back: %v", err)
	}
}

// Between two looks at the filesystem the guard counts what it admitted: a
// burst of mail inside one second stops at the minimum, not past it.
func TestDiskGuardCountsWhatItAdmits(t *testing.T) {
	g := newDiskGuard("", 100<<20)
	looks := 0
	g.statfs = func(string) (int64, error) { looks++; return 105 << 20, nil }
	now := t0
	admitted := 0
	for range 100 {
		if g.check(now, 1<<20) != nil {
			break
		}
		admitted++
	}
	// 5 MiB above the minimum, 1 MiB bodies plus their envelopes.
	if admitted != 4 {
		t.Fatalf("admitted %d MiB bodies with 5 MiB to spare", admitted)
	}
	if err := g.check(now, 1<<20); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("after the burst: %v", err)
	}
	// A second later it looks again; the space it counted is gone for real
	// only if the filesystem says so.
	if err := g.check(now.Add(time.Second), 1<<20); err != nil || looks != 2 {
		t.Fatalf("a second later: %v after %d looks", err, looks)
	}
	// Eight MiB admitted within the second make it look again too.
	g2 := newDiskGuard("", 1<<20)
	looks = 0
	g2.statfs = func(string) (int64, error) { looks++; return 1 << 40, nil }
	for range 20 {
		g2.check(now, 1<<20)
	}
	if looks < 2 {
		t.Fatalf("%d looks for 20 MiB admitted in an instant", looks)
	}
}

func TestBackoff(t *testing.T) {
	first, max := 5*time.Minute, 4*time.Hour
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 5 * time.Minute}, {1, 5 * time.Minute}, {2, 10 * time.Minute}, {3, 20 * time.Minute},
		{4, 40 * time.Minute}, {5, 80 * time.Minute}, {6, 160 * time.Minute}, {7, 4 * time.Hour}, {50, 4 * time.Hour},
	} {
		if got := Backoff(tc.attempt, first, max, nil); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		d := Backoff(3, first, max, rnd)
		if d < 18*time.Minute || d > 22*time.Minute {
			t.Fatalf("jittered 20m = %v, outside ±10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Errorf("jitter too coarse: %d distinct values in 100", len(seen))
	}
}

func TestWalkAndFilter(t *testing.T) {
	e := newEnv(t)
	a, b := msg("a@x.example"), msg("b@y.example")
	b.Account = "other"
	for _, m := range []*Message{a, b} {
		if err := e.s.Enqueue(context.Background(), m, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	f := Filter{RecipientDomain: "Y.example"}
	e.s.Walk("", func(m *Message) bool {
		if f.Match(m, t0) {
			got = append(got, m.ID)
		}
		return true
	})
	if len(got) != 1 || got[0] != b.ID {
		t.Fatalf("filtered walk = %v", got)
	}
	total, held, _ := e.s.Count()
	if total != 2 || held != 0 {
		t.Fatalf("count = %d, %d", total, held)
	}
}

func BenchmarkEnqueueParallel(b *testing.B) {
	e := openEnv(b, b.TempDir(), clock.NewFake(t0), 0)
	defer e.close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	b.SetBytes(int64(len(body)))
	b.SetParallelism(10) // 10 x GOMAXPROCS writers, like concurrent SMTP sessions
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.s.Enqueue(context.Background(), msg("a@x.example"), body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	st := e.s.Stats()
	b.ReportMetric(float64(st.Enqueued)/float64(st.Commits), "msgs/commit")
}

func TestLanes(t *testing.T) {
	e := newEnv(t)
	lo, hi := msg("a@gmail.example"), msg("b@gmail.example", "c@other.example")
	hi.Priority = 5
	for _, m := range []*Message{lo, hi} {
		if err := e.s.Enqueue(context.Background(), m, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// Both wait for capacity at gmail; hi's other recipient stays scheduled.
	lo.Rcpts[0].Wait = "p|gmail"
	hi.Rcpts[0].Wait = "p|gmail"
	if err := e.s.SaveMany([]*Message{lo, hi}); err != nil {
		t.Fatal(err)
	}
	due, _ := e.s.Due(time.Time{}, t0, 10, nil)
	if len(due) != 1 || due[0].ID != hi.ID {
		t.Fatalf("due = %v, want only the message with a recipient not waiting", due)
	}
	lanes, err := e.s.Lanes()
	if err != nil || len(lanes) != 1 || lanes[0] != "p|gmail" {
		t.Fatalf("lanes = %v, %v", lanes, err)
	}
	w, err := e.s.Waiting("p|gmail", 10, nil)
	if err != nil || len(w) != 2 || w[0].ID != hi.ID || w[1].ID != lo.ID {
		t.Fatalf("waiting = %v, %v (want the higher priority first)", w, err)
	}
	if n := e.s.CountWaiting("p|gmail"); n != 2 {
		t.Fatalf("count = %d", n)
	}
	// Survives a restart.
	e.reopen(t, 0)
	if w, _ := e.s.Waiting("p|gmail", 10, func(id string) bool { return id == hi.ID }); len(w) != 1 || w[0].ID != lo.ID {
		t.Fatalf("after reopen, skipping hi: %v", w)
	}
	// Taken from the lane: back in the schedule.
	m, _ := e.s.Get(lo.ID)
	m.Rcpts[0].Wait = ""
	if err := e.s.Save(m); err != nil {
		t.Fatal(err)
	}
	if n := e.s.CountWaiting("p|gmail"); n != 1 {
		t.Fatalf("count after taking one = %d", n)
	}
	due, _ = e.s.Due(time.Time{}, t0, 10, nil)
	if len(due) != 2 {
		t.Fatalf("due after taking = %d", len(due))
	}
	// Deleting removes the lane keys too.
	h, _ := e.s.Get(hi.ID)
	if err := e.s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if lanes, _ := e.s.Lanes(); len(lanes) != 0 {
		t.Fatalf("lanes after delete = %v", lanes)
	}
}

// A lane read from a cursor goes on after it; a message skipped on the way
// keeps the cursors behind it, so the next read comes back to it.
func TestLaneCursor(t *testing.T) {
	e := newEnv(t)
	var ms []*Message
	for i := range 5 {
		m := msg(fmt.Sprintf("r%d@gmail.example", i))
		m.Created = t0.Add(time.Duration(i) * time.Second)
		if err := e.s.Enqueue(context.Background(), m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		m.Rcpts[0].Wait = "p|gmail"
		ms = append(ms, m)
	}
	if err := e.s.SaveMany(ms); err != nil {
		t.Fatal(err)
	}
	ids := func(w []*Message) []string {
		var out []string
		for _, m := range w {
			out = append(out, m.ID)
		}
		return out
	}
	w, cur, err := e.s.WaitingAfter("p|gmail", nil, 2, nil)
	if err != nil || !slices.Equal(ids(w), []string{ms[0].ID, ms[1].ID}) || len(cur) != 2 {
		t.Fatalf("from the head: %v, %v", ids(w), err)
	}
	w, cur2, _ := e.s.WaitingAfter("p|gmail", cur[1], 10, func(id string) bool { return id == ms[3].ID })
	if !slices.Equal(ids(w), []string{ms[2].ID, ms[4].ID}) {
		t.Fatalf("after the second, skipping the fourth: %v", ids(w))
	}
	// The fifth's cursor stays before the skipped fourth.
	next, _, _ := e.s.WaitingAfter("p|gmail", cur2[1], 10, nil)
	if len(next) == 0 || next[0].ID != ms[3].ID {
		t.Fatalf("after the fifth's cursor: %v, want the skipped fourth first", ids(next))
	}
	// A message that sorts before the cursor (older, or of higher
	// priority) is reported as behind it.
	if !cur[1].Before("p|gmail", 0, t0, ms[0].ID) || cur[1].Before("p|gmail", 0, t0.Add(time.Hour), "z") {
		t.Fatal("Before misplaces messages around the cursor")
	}
	if !cur[1].Before("p|gmail", 9, t0.Add(time.Hour), "z") {
		t.Fatal("a higher priority message is not before the cursor")
	}
	if LaneCursor(nil).Before("p|gmail", 9, t0, "a") {
		t.Fatal("nothing is before the head")
	}
}

func TestCounts(t *testing.T) {
	e := newEnv(t)
	a, b := msg("x@one.example", "y@two.example"), msg("z@one.example")
	for _, m := range []*Message{a, b} {
		if err := e.s.Enqueue(context.Background(), m, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, want Counts, top string) {
		t.Helper()
		if got := e.s.Counts(); got != want {
			t.Fatalf("%s: counts %+v, want %+v", when, got, want)
		}
		if top != "" {
			if d := e.s.PendingByDomain(1); len(d) != 1 || d[0].Domain != top {
				t.Fatalf("%s: top domain %v, want %s", when, d, top)
			}
		}
	}
	check("after enqueue", Counts{Messages: 2, Pending: 3, Domains: 2}, "one.example")
	a.Rcpts[0].State = RcptDelivered
	b.Held = true
	if err := e.s.SaveMany([]*Message{a, b}); err != nil {
		t.Fatal(err)
	}
	check("after a delivery and a hold", Counts{Messages: 2, Held: 1, Pending: 2, Domains: 2}, "")
	e.reopen(t, 0)
	check("after a restart", Counts{Messages: 2, Held: 1, Pending: 2, Domains: 2}, "")
	m, _ := e.s.Get(a.ID)
	if err := e.s.Delete(m); err != nil {
		t.Fatal(err)
	}
	check("after a delete", Counts{Messages: 1, Held: 1, Pending: 1, Domains: 1}, "one.example")
}
