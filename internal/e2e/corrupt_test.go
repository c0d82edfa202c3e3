package e2e

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/fakemx"
	"kiln/queue"
)

// A corrupt record: with kiln stopped, one queued message's envelope (its
// q/m/<id> value in the store) and another's body (in its spool segment) get
// a flipped byte. After a restart both are reported in
// /api/v1/queue/quarantine and in the log, neither is delivered (not as
// garbage, not at all), and every other queued message is delivered.
func TestCorruptRecord(t *testing.T) {
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	d := w.start("")
	hold(t, d, `{"recipient_domain":"dest.test"}`)

	const n = 10
	qids := make([]string, n)
	for i := range qids {
		qid, err := submit(d.submit, "app@sender.test", "r@dest.test", fmt.Sprintf("<corrupt-%d@e2e.test>", i))
		if err != nil {
			t.Fatal(err)
		}
		qids[i] = qid
	}
	d.stop()

	data := filepath.Join(w.dataDir, "data")
	badRecord, badBody := qids[3], qids[7]
	flipRecord(t, filepath.Join(data, "db"), badRecord)
	flipBody(t, filepath.Join(data, "spool"), badBody)

	d.launch()
	// The envelope fails its checksum when the queue is recovered at start.
	var health struct {
		Recovered queue.RecoveryReport
	}
	adminJSON(t, d, "", "/healthz", &health)
	if health.Recovered.Quarantined != 1 || health.Recovered.Messages != n-1 {
		t.Errorf("/healthz says the recovery found %+v, want %d messages and 1 quarantined", health.Recovered, n-1)
	}
	var q struct{ Quarantined []queue.Quarantined }
	adminJSON(t, d, "", "/api/v1/queue/quarantine", &q)
	if len(q.Quarantined) != 1 || q.Quarantined[0].ID != badRecord || !strings.Contains(q.Quarantined[0].Reason, "checksum") {
		t.Fatalf("after the restart the quarantine holds %+v, want %s with a checksum error", q.Quarantined, badRecord)
	}
	// The body fails its checksum when it is read for delivery.
	release(t, d, `{"recipient_domain":"dest.test"}`)
	mx.WaitMessages(t, n-2)
	waitUntil(t, "the damaged body to be quarantined", 30*time.Second, func() bool {
		adminJSON(t, d, "", "/api/v1/queue/quarantine", &q)
		return len(q.Quarantined) == 2
	})
	reasons := map[string]string{}
	for _, e := range q.Quarantined {
		reasons[e.ID] = e.Reason
	}
	if !strings.Contains(reasons[badBody], "checksum") {
		t.Errorf("quarantine: %+v, want %s with a body checksum error", q.Quarantined, badBody)
	}
	time.Sleep(500 * time.Millisecond) // anything else would have arrived by now
	got := messageIDs(mx.Messages())
	for i := range qids {
		id := fmt.Sprintf("<corrupt-%d@e2e.test>", i)
		want := 1
		if i == 3 || i == 7 {
			want = 0
		}
		if got[id] != want {
			t.Errorf("%s (queue id %s) arrived %d times, want %d", id, qids[i], got[id], want)
		}
	}
	if len(got) != n-2 {
		t.Errorf("the MX got %d distinct messages, want %d: %v", len(got), n-2, got)
	}
	for _, m := range mx.Messages() {
		if m.BareCRLF() != 0 || !bytes.Contains(m.Data, []byte("lorem ipsum")) {
			t.Errorf("a delivered message looks damaged:\n%q", m.Data)
		}
	}
	// Nothing is left in the queue: the damaged messages were set aside,
	// not left to be retried.
	waitUntil(t, "the queue to empty", 30*time.Second, func() bool {
		var health struct{ Queue int }
		adminJSON(t, d, "", "/healthz", &health)
		return health.Queue == 0
	})
	d.stop()
	logged, _ := os.ReadFile(d.log.Name())
	for _, id := range []string{badRecord, badBody} {
		if !bytes.Contains(logged, []byte(id)) || !bytes.Contains(logged, []byte("quarantin")) {
			t.Errorf("kiln's log does not report the quarantine of %s", id)
		}
	}
	report(t, "envelope %s and body %s damaged: both quarantined and reported, %d others delivered once", badRecord, badBody, n-2)
}

// flipRecord changes one byte of the JSON of a message's record, with kiln
// stopped (the store is locked while it runs).
func flipRecord(t *testing.T, dbDir, id string) {
	t.Helper()
	db, err := queue.OpenDB(dbDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := []byte("q/m/" + id)
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		i := bytes.Index(v, []byte(`"`+id+`"`))
		if i < 0 {
			return fmt.Errorf("record of %s does not hold its id: %q", id, v)
		}
		v[i+2] ^= 0x01 // a digit of the id in the JSON
		return txn.Set(key, v)
	})
	if err != nil {
		t.Fatalf("damaging the record of %s: %v", id, err)
	}
}

// flipBody changes one byte of a message's body in its spool segment
// ("KLB1" | id length | id | body length | CRC | body).
func flipBody(t *testing.T, spoolDir, id string) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.dat"))
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		hdr := append([]byte("KLB1"), byte(len(id)))
		hdr = append(hdr, id...)
		i := bytes.Index(b, hdr)
		if i < 0 {
			continue
		}
		body := i + len(hdr) + 8
		j := bytes.Index(b[body:], []byte("lorem"))
		if j < 0 {
			t.Fatalf("no body text after the header of %s in %s", id, seg)
		}
		b[body+j] = 'L'
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("the body of %s is in no spool segment (%v)", id, segs)
}
