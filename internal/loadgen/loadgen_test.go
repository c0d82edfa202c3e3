package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/internal/smtpsink"
)

func sink(t *testing.T, cfg smtpsink.Config) *smtpsink.Server {
	t.Helper()
	s, err := smtpsink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runT(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestCountsMatchTheSink(t *testing.T) {
	var mu sync.Mutex
	var seen []smtpsink.Message
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff, Latency: 2 * time.Millisecond, OnMessage: func(m *smtpsink.Message) {
		mu.Lock()
		seen = append(seen, smtpsink.Message{Rcpts: m.Rcpts, Data: bytes.Clone(m.Data), Reply: m.Reply, ID: m.ID})
		mu.Unlock()
	}})
	var ack bytes.Buffer
	rep := runT(t, Config{
		Addr: s.Addr(), Concurrency: 4, Messages: 200, Rcpts: 3, Domains: []string{"a.test", "b.test"},
		Users: 5, Size: 2000, FromDomain: "sender.test", AckLog: &ack,
	})
	st := s.Stats()
	if rep.Messages != 200 || rep.Accepted != 200 || rep.Failed != 0 || st.Messages != 200 {
		t.Fatalf("report %+v, sink %+v", rep, st)
	}
	if rep.RcptAccepted != 600 || st.Recipients != 600 || rep.Bytes != st.Bytes {
		t.Errorf("recipients %d / %d, bytes %d / %d", rep.RcptAccepted, st.Recipients, rep.Bytes, st.Bytes)
	}
	if rep.Connections != 4 || st.Sessions != 4 {
		t.Errorf("connections %d, sessions %d", rep.Connections, st.Sessions)
	}
	// Latency figures: one per accepted message, ordered, and never below
	// the sink's own wait.
	l := rep.Latency
	if l.Count != 200 || l.P50 < 2*time.Millisecond || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max || l.Mean <= 0 {
		t.Errorf("latency %+v", l)
	}
	// The message: about the size asked for, a unique Message-ID, the
	// recipient mix.
	msgIDs := map[string]bool{}
	rcpts := map[string]bool{}
	for _, m := range seen {
		if n := len(m.Data); n < 1900 || n > 2100 {
			t.Errorf("message of %d bytes, want about 2000", n)
		}
		if !bytes.Contains(m.Data, []byte("\r\nFrom: kiln loadgen <loadgen@sender.test>\r\n")) {
			t.Errorf("header %q", m.Data[:200])
		}
		msgIDs[smtpsink.HeaderValue(m.Data, "Message-ID")] = true
		for _, r := range m.Rcpts {
			rcpts[r] = true
		}
	}
	if len(msgIDs) != 200 {
		t.Errorf("%d distinct Message-IDs", len(msgIDs))
	}
	if len(rcpts) != 10 || !rcpts["rcpt1@a.test"] || !rcpts["rcpt5@b.test"] {
		t.Errorf("recipients %v", rcpts)
	}
	// Every ack line parses and matches what the sink received.
	byID := map[string]smtpsink.Message{}
	for _, m := range seen {
		byID[smtpsink.HeaderValue(m.Data, "Message-ID")] = m
	}
	sc := bufio.NewScanner(&ack)
	n := 0
	for sc.Scan() {
		var e AckEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("ack line %q: %v", sc.Text(), err)
		}
		n++
		m, ok := byID[e.MessageID]
		if !ok || e.QueueID != m.ID || e.Reply != m.Reply || len(e.Rcpts) != 3 || e.At.IsZero() {
			t.Errorf("ack %+v, sink had %+v", e, m.ID)
		}
	}
	if n != 200 {
		t.Errorf("%d ack lines", n)
	}
}

func TestErrorsByReplyMatchTheSink(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff, Seed: 11, Rules: []smtpsink.Rule{
		{Stage: smtpsink.StageRcpt, Match: "unknown*@*", Code: 550, Enhanced: "5.1.1"},
		{Stage: smtpsink.StageData, Share: 0.2, Code: 451, Enhanced: "4.3.0"},
		{Stage: smtpsink.StageConnect, Share: 0.3, Code: 421, Enhanced: "4.7.0"},
	}})
	rep := runT(t, Config{Addr: s.Addr(), Concurrency: 3, Messages: 150, PerConn: 5, Rcpts: 2,
		Locals: []string{"rcpt", "unknown", "rcpt"}})
	ref := s.Refusals()
	if rep.Errors["RCPT 550 5.1.1"] != ref["rcpt 550"] || rep.Errors["DOT 451 4.3.0"] != ref["data 451"] ||
		rep.Errors["CONNECT 421 4.7.0"] != ref["connect 421"] {
		t.Errorf("loadgen %v, sink %v", rep.Errors, ref)
	}
	if ref["rcpt 550"] == 0 || ref["data 451"] == 0 || ref["connect 421"] == 0 {
		t.Errorf("sink refusals %v: every rule should have fired", ref)
	}
	if rep.Accepted != s.Stats().Messages || rep.Accepted+rep.Failed != rep.Messages || rep.Messages != 150 {
		t.Errorf("report %+v, sink %+v", rep, s.Stats())
	}
	if rep.RcptRefused != ref["rcpt 550"] {
		t.Errorf("recipients refused %d", rep.RcptRefused)
	}
}

func TestOneConnectionPerMessage(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff})
	rep := runT(t, Config{Addr: s.Addr(), Concurrency: 2, Messages: 20, PerConn: 1})
	if rep.Accepted != 20 || rep.Connections != 20 || s.Stats().Sessions != 20 {
		t.Errorf("report %+v, sink %+v", rep, s.Stats())
	}
}

func TestSTARTTLSAndAuth(t *testing.T) {
	users := map[string]string{"app": "s3cret"}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"starttls-plain", Config{TLS: TLSStartTLS, Auth: "plain"}},
		{"starttls-login", Config{TLS: TLSStartTLS, Auth: "LOGIN"}},
		{"implicit-plain", Config{TLS: TLSImplicit, Auth: "plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sink(t, smtpsink.Config{ListenTLS: []string{"127.0.0.1:0"}, Addr: "127.0.0.1:0", Users: users})
			cfg := tc.cfg
			cfg.Addr = s.Addrs()[0]
			if cfg.TLS == TLSImplicit {
				cfg.Addr = s.TLSAddrs()[0]
			}
			cfg.RootCAs, cfg.ServerName = s.CertPool(), "mx.sink.test"
			cfg.User, cfg.Password = "app", "s3cret"
			cfg.Concurrency, cfg.Messages, cfg.PerConn = 2, 10, 3
			rep := runT(t, cfg)
			if rep.Accepted != 10 || rep.TLSConnections != rep.Connections || rep.Connections != 4 {
				t.Fatalf("report %+v", rep)
			}
			for _, m := range s.Messages() {
				if !m.TLS || m.AuthUser != "app" || m.Helo != "loadgen.invalid" {
					t.Errorf("message %+v", m)
				}
			}
		})
	}
}

func TestAuthInPlaintextToLoopback(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff, Users: map[string]string{"app": "pw"}, AuthPlaintext: true})
	rep := runT(t, Config{Addr: s.Addr(), Auth: "plain", User: "app", Password: "pw", Messages: 3})
	if rep.Accepted != 3 || s.Messages()[0].AuthUser != "app" {
		t.Errorf("report %+v", rep)
	}
	rep = runT(t, Config{Addr: s.Addr(), Auth: "login", User: "app", Password: "wrong", Messages: 2})
	if rep.Accepted != 0 || rep.Errors["AUTH 535 5.7.8"] != 2 {
		t.Errorf("bad password: %+v", rep.Errors)
	}
}

func TestTLSFailuresAreNamed(t *testing.T) {
	s := sink(t, smtpsink.Config{})
	// The sink's self-signed certificate does not verify without its pool.
	rep := runT(t, Config{Addr: s.Addr(), TLS: TLSStartTLS, Messages: 1})
	if rep.Errors["STARTTLS TLS: certificate signed by an unknown authority"] != 1 {
		t.Errorf("unverified: %v", rep.Errors)
	}
	rep = runT(t, Config{Addr: s.Addr(), TLS: TLSStartTLS, Insecure: true, Messages: 1})
	if rep.Accepted != 1 {
		t.Errorf("insecure: %+v", rep)
	}
	off := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff})
	rep = runT(t, Config{Addr: off.Addr(), TLS: TLSStartTLS, Insecure: true, Messages: 1})
	if rep.Errors["STARTTLS not offered"] != 1 {
		t.Errorf("not offered: %v", rep.Errors)
	}
	rep = runT(t, Config{Addr: off.Addr(), Auth: "plain", User: "u", Messages: 1})
	if rep.Errors["AUTH not offered"] != 1 {
		t.Errorf("no AUTH: %v", rep.Errors)
	}
}

func TestLostConnectionsAreCountedAndRecovered(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff, Rules: []smtpsink.Rule{
		{Stage: smtpsink.StageData, Drop: true, Times: 2},
		{Stage: smtpsink.StageData, DropAfter: 10, Times: 1},
	}})
	var ack bytes.Buffer
	rep := runT(t, Config{Addr: s.Addr(), Messages: 10, AckLog: &ack})
	if rep.Accepted != 7 || rep.Errors["DOT connection lost"] != 3 || rep.Connections != 4 {
		t.Errorf("report %+v", rep)
	}
	if n := strings.Count(ack.String(), "\n"); n != 7 {
		t.Errorf("%d acks for 7 accepted messages", n)
	}
}

func TestConnectionRefused(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff})
	addr := s.Addr()
	s.Close()
	rep := runT(t, Config{Addr: addr, Messages: 3})
	if rep.Failed != 3 || rep.Errors["CONNECT connection refused"] != 3 {
		t.Errorf("%+v", rep)
	}
}

// The schedule is fixed in advance, so a run at R messages/s cannot end
// before (N-1)/R seconds: a lower bound, which no slow machine can break.
func TestRateLimit(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff})
	rep := runT(t, Config{Addr: s.Addr(), Concurrency: 4, Messages: 16, Rate: 50})
	if rep.Accepted != 16 {
		t.Fatalf("%+v", rep)
	}
	if min := 15 * time.Second / 50; rep.Elapsed < min {
		t.Errorf("16 messages at 50/s took %v, want at least %v", rep.Elapsed, min)
	}
}

func TestDurationAndCancel(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff})
	rep := runT(t, Config{Addr: s.Addr(), Duration: 200 * time.Millisecond, Rate: 100})
	// At most the 20 slots inside the window were used.
	if rep.Messages == 0 || rep.Messages > 20 || rep.Accepted != s.Stats().Messages {
		t.Errorf("duration run: %+v", rep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := Run(ctx, Config{Addr: s.Addr(), Messages: 1000})
	if err != nil || rep.Messages != 0 {
		t.Errorf("cancelled run: %+v %v", rep, err)
	}
}

func TestProgressAndReports(t *testing.T) {
	s := sink(t, smtpsink.Config{TLS: smtpsink.TLSOff, Rules: []smtpsink.Rule{{Stage: smtpsink.StageRcpt, Match: "x*", Code: 550, Enhanced: "5.1.1"}}})
	var progress strings.Builder
	rep := runT(t, Config{Addr: s.Addr(), Messages: 30, Rate: 100, Locals: []string{"a", "x"}, Progress: &progress, Every: 50 * time.Millisecond})
	if !strings.Contains(progress.String(), " sent, ") || !strings.Contains(progress.String(), "p99") {
		t.Errorf("progress %q", progress.String())
	}
	var text strings.Builder
	rep.WriteText(&text)
	for _, want := range []string{"30 sent, 15 accepted, 15 failed", "15 refused", "p50", "RCPT 550 5.1.1"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Messages int            `json:"messages"`
		Accepted int            `json:"accepted"`
		Errors   map[string]int `json:"errors"`
		Latency  struct {
			Count int     `json:"count"`
			P50   float64 `json:"p50"`
			Max   float64 `json:"max"`
		} `json:"latency_ms"`
		CPUPer float64 `json:"cpu_us_per_message"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	if j.Messages != 30 || j.Accepted != 15 || j.Errors["RCPT 550 5.1.1"] != 15 || j.Latency.Count != 15 || j.Latency.P50 <= 0 || j.Latency.Max < j.Latency.P50 {
		t.Errorf("json %s", data)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addr: "nohost"},
		{Addr: "127.0.0.1:1", TLS: "ssl"},
		{Addr: "127.0.0.1:1", Auth: "cram-md5", User: "u"},
		{Addr: "127.0.0.1:1", Auth: "plain"},
		{Addr: "127.0.0.1:1", Rate: -1},
		{Addr: "127.0.0.1:1", Domains: []string{"a b"}},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestParseDomains(t *testing.T) {
	d, err := ParseDomains("3")
	if err != nil || strings.Join(d, ",") != "dom1.test,dom2.test,dom3.test" {
		t.Errorf("%v %v", d, err)
	}
	d, err = ParseDomains("gmail.test, yahoo.test")
	if err != nil || strings.Join(d, ",") != "gmail.test,yahoo.test" {
		t.Errorf("%v %v", d, err)
	}
	for _, bad := range []string{"0", "", "a@b", ","} {
		if _, err := ParseDomains(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRecipientMix(t *testing.T) {
	c := Config{Addr: "127.0.0.1:1", Domains: []string{"a.test", "b.test"}, Locals: []string{"r", "s"}, Users: 2}
	c.defaults()
	var got []string
	for k := range 9 {
		got = append(got, c.rcpt(k))
	}
	want := "r1@a.test r1@b.test s1@a.test s1@b.test r2@a.test r2@b.test s2@a.test s2@b.test r1@a.test"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestQueueID(t *testing.T) {
	for reply, want := range map[string]string{
		"250 2.0.0 OK: queued as 01HXYZ":     "01HXYZ",
		"250 2.0.0 Ok: queued as 4bK3 (x)":   "4bK3",
		"250 2.6.0 <id@remote> accepted":     "",
		"250 2.0.0 OK: queued as <Q000001>.": "Q000001",
	} {
		if got := QueueID(reply); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", reply, got, want)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	l := h.latency()
	near := func(got, want time.Duration) bool {
		return got >= want && float64(got) <= float64(want)*1.02
	}
	if !near(l.P50, 500*time.Microsecond) || !near(l.P90, 900*time.Microsecond) || !near(l.P99, 990*time.Microsecond) || l.Max != time.Millisecond {
		t.Errorf("%+v", l)
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 123456789} {
		i := bucketOf(v)
		if upper(i) < v || (i > 0 && upper(i-1) >= v) {
			t.Errorf("value %d in bucket %d with upper %d (previous %d)", v, i, upper(i), upper(i-1))
		}
	}
}
