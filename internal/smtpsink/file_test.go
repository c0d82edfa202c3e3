package smtpsink

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The documented example is loaded as it is, so it can never rot.
func TestExampleRulesFile(t *testing.T) {
	f, err := Load("../../configs/sink.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Listen) != 1 || f.Hostname != "mx.sink.test" || f.Latency.D() != 20*time.Millisecond || f.Seed != 1 {
		t.Errorf("top level: %+v", f)
	}
	if f.Output.Every.D() != 10*time.Second || f.TLS.Mode != "on" {
		t.Errorf("sections: %+v %+v", f.Output, f.TLS)
	}
	cfg := f.Config()
	if len(cfg.Rules) != 6 || len(cfg.Throttles) != 3 {
		t.Fatalf("%d rules, %d throttles", len(cfg.Rules), len(cfg.Throttles))
	}
	if r := cfg.Rules[4]; r.Stage != StageData || r.DropAfter != 1024 || r.Share != 0.005 {
		t.Errorf("mid-DATA drop rule %+v", r)
	}
	if th := cfg.Throttles[1]; th.Code != 421 || !strings.Contains(th.Text, "[TSS04]") || th.PerHour != 300 {
		t.Errorf("yahoo throttle %+v", th)
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestEmptyRulesFile(t *testing.T) {
	f, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.Config()
	if cfg.TLS != TLSOn || len(cfg.Rules) != 0 || len(cfg.Listen) != 0 {
		t.Errorf("%+v", cfg)
	}
}

func TestRulesFileErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"listen = [\"127.0.0.1:2525\"]\nlatnecy = \"1s\"\n", "bad.toml:2: latnecy: unknown key"},
		{"\n\nlatency = \"fast\"\n", "bad.toml:3: latency: "},
		{"[output]\nevery = \"-1s\"\n", "bad.toml:2: output.every: "},
		{"[[reply]]\nstage = \"rcpt\"\ncode = 250\n\n[[reply]]\nstage = \"rcpt\"\ncode = 700\n", "bad.toml:7: reply[1].code: code 700: want 200 to 599"},
		{"[[reply]]\nstage = \"rcpt\"\ncode = 550\nenhanced = \"4.1.1\"\n", "bad.toml:4: reply[0].enhanced: enhanced \"4.1.1\" does not match code 550"},
		{"[[reply]]\nstage = \"rcpt\"\ndrop_after = 10\n", "bad.toml:3: reply[0].drop_after: drop_after is for the data stage only"},
		{"[[reply]]\nstage = \"data\"\nshare = 2.0\n", "bad.toml:3: reply[0].share: "},
		{"[[reply]]\nstage = \"helo\"\n", "bad.toml:2: reply[0].stage: stage \"helo\""},
		{"[[reply]]\ncode = 550\n", "bad.toml:1: reply[0].stage: missing"},
		{"[[reply]]\nstage = \"rcpt\"\ncode = \"550\"\n", "bad.toml:3: reply.code: want an integer, not a TOML string"},
		{"[[throttle]]\nper_hour = 10\nas = \"hotmail\"\n", "bad.toml:3: throttle[0].as: \"hotmail\": want one of gmail, microsoft, yahoo"},
		{"[[throttle]]\nas = \"gmail\"\n", "bad.toml:1: throttle[0].per_hour: missing"},
		{"[[throttle]]\nper_hour = 10\n", "bad.toml:1: throttle[0].code: missing"},
		{"[[throttle]]\nper_hour = 10\nas = \"gmail\"\ncode = 421\n", "bad.toml:3: throttle[0].as: give either"},
		{"[[throttle]]\nper_hour = 10\ncode = 250\n", "bad.toml:3: throttle[0].code: code 250: a throttle refuses"},
		{"[tls]\nmode = \"maybe\"\n", "bad.toml:2: tls.mode: \"maybe\": want on, off or broken"},
		{"[tls]\ncert = \"c.pem\"\n", "bad.toml:2: tls.cert: give both"},
		{"listen = [\n  \"127.0.0.1:25\",\n  \"nohost\",\n]\n", "bad.toml:3: listen[1]: \"nohost\": want host:port"},
		{"listen = \"127.0.0.1:25\"\n", "bad.toml:1: listen: want a list of strings"},
	} {
		_, err := Parse("bad.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, tc.want)
		}
	}
}

func TestSeveralProblemsAreAllReported(t *testing.T) {
	_, err := Parse("bad.toml", []byte("[[reply]]\nstage = \"x\"\n[[reply]]\nstage = \"rcpt\"\ncode = 1\n[tls]\nmode = \"no\"\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Errorf("%d problems reported:\n%v", len(lines), err)
	}
}

// A sink as "kiln sink" runs it: log, saved messages, counters file.
func TestSinkLogsSavesAndCounts(t *testing.T) {
	dir := t.TempDir()
	doc := `listen = ["127.0.0.1:0"]
[tls]
mode = "off"
[output]
log_file = "` + filepath.Join(dir, "log.jsonl") + `"
save_dir = "` + filepath.Join(dir, "msgs") + `"
counters_file = "` + filepath.Join(dir, "counters.json") + `"
[[reply]]
stage = "data"
match = "defer*@*"
code = 451
enhanced = "4.3.0"
[[reply]]
stage = "rcpt"
match = "unknown*@*"
code = 550
enhanced = "5.1.1"
`
	f, err := Parse("sink.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out strings.Builder
	done := make(chan error)
	go func() { done <- k.Run(ctx, &out, 0, 0) }()

	c, err := smtp.Dial(k.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Hello("client.test")
	msg := "From: a@sender.test\r\nMessage-ID: <one@sender.test>\r\n\r\nbody\r\n"
	if err := send(c, "a@sender.test", []string{"r1@d.test", "unknown@d.test", "r2@d.test"}, msg); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "a@sender.test", []string{"defer@d.test"}, "Message-ID: <two@sender.test>\r\n\r\nx\r\n"); code(err) != 451 {
		t.Fatalf("deferral: %v", err)
	}
	c.Quit()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	lf, err := os.Open(filepath.Join(dir, "log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var entries []LogEntry
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		entries = append(entries, e)
	}
	if len(entries) != 2 {
		t.Fatalf("%d log lines", len(entries))
	}
	e := entries[0]
	if raw, _ := os.ReadFile(filepath.Join(dir, "log.jsonl")); !strings.Contains(string(raw), `"message_id":"<one@sender.test>"`) {
		t.Errorf("log not readable as written: %s", raw)
	}
	if e.MessageID != "<one@sender.test>" || e.ID == "" || e.From != "a@sender.test" || len(e.Rcpts) != 2 ||
		e.Size != len(msg) || e.TLS || e.Helo != "client.test" || !strings.HasPrefix(e.Reply, "250 2.0.0 OK: queued as "+e.ID) {
		t.Errorf("entry %+v", e)
	}
	if saved, err := os.ReadFile(e.File); err != nil || string(saved) != msg {
		t.Errorf("saved %q: %q %v", e.File, saved, err)
	}
	if e := entries[1]; e.MessageID != "<two@sender.test>" || e.ID != "" || !strings.HasPrefix(e.Reply, "451 4.3.0") || e.File != "" {
		t.Errorf("deferred entry %+v", e)
	}
	if files, _ := os.ReadDir(filepath.Join(dir, "msgs")); len(files) != 1 {
		t.Errorf("%d files saved", len(files))
	}

	var cnt Counters
	data, err := os.ReadFile(filepath.Join(dir, "counters.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cnt); err != nil {
		t.Fatal(err)
	}
	if cnt.Messages != 1 || cnt.Recipients != 2 || cnt.Bytes != int64(len(msg)) || cnt.Transactions != 2 || cnt.Refused["rcpt 550"] != 1 || cnt.Refused["data 451"] != 1 {
		t.Errorf("counters %s", data)
	}
	if r := out.String(); !strings.Contains(r, "1 messages") || !strings.Contains(r, "data 451=1 rcpt 550=1") {
		t.Errorf("report %q", r)
	}
}

func TestRunStopsAfterMaxMessages(t *testing.T) {
	f, _ := Parse("s.toml", []byte("listen = [\"127.0.0.1:0\"]\n[tls]\nmode = \"off\"\n"))
	k, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var out strings.Builder
	done := make(chan error)
	go func() { done <- k.Run(context.Background(), &out, time.Hour, 2) }()
	c, err := smtp.Dial(k.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Hello("c")
	for range 2 {
		if err := send(c, "a@sender.test", []string{"r@d.test"}, body); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after 2 messages")
	}
	if !strings.Contains(out.String(), "2 messages") {
		t.Errorf("report %q", out.String())
	}
}
