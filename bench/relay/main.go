// Command relay is kiln's relay benchmark: it injects messages into a kiln
// process over SMTP, kiln relays them to a counting sink, and the clock runs
// from the first injection until the sink has every message. It prints
// messages per second end to end, kiln's CPU time per message and its peak
// resident memory.
//
//	go run ./bench/relay                      # 20,000 messages of 4 KB, 20 sessions
//	go run ./bench/relay -dkim -repeat 3      # with dual DKIM signing, three runs
//
// The injector and the sink run inside this process, so kiln's own CPU and
// memory are measured alone (from /proc). Put -workdir on the disk you want
// to measure: kiln fsyncs every batch, so tmpfs would flatter it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"kiln/dkim"
	"kiln/internal/loadgen"
	"kiln/internal/smtpsink"
)

type result struct {
	N          int     `json:"n"`
	Seconds    float64 `json:"e2e_seconds"`
	MsgsPerSec float64 `json:"e2e_msgs_per_s"`
	InjectRate float64 `json:"inject_msgs_per_s"`
	CPUms      float64 `json:"kiln_cpu_ms_per_msg"`
	PeakRSSMiB float64 `json:"kiln_peak_rss_mib"`
	P50ms      float64 `json:"ack_p50_ms"`
	P99ms      float64 `json:"ack_p99_ms"`
	Arrived    int     `json:"arrived"`
}

func main() {
	kilnBin := flag.String("kiln", "", "kiln binary (default: build ./cmd/kiln)")
	n := flag.Int("n", 20000, "messages")
	conc := flag.Int("concurrency", 20, "injecting sessions")
	size := flag.Int("size", 4096, "message size in bytes")
	domains := flag.Int("domains", 4, "recipient domains")
	reuse := flag.Bool("reuse", false, "send many messages per injecting connection (default: one per connection)")
	withDKIM := flag.Bool("dkim", false, "sign every message with an RSA-2048 and an Ed25519 key (dual)")
	repeat := flag.Int("repeat", 1, "runs (the median is reported)")
	workdir := flag.String("workdir", os.TempDir(), "directory for kiln's data (on the disk to measure)")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	flag.Parse()

	if *kilnBin == "" {
		dir, err := os.MkdirTemp("", "kiln-bench-bin")
		check(err)
		defer os.RemoveAll(dir)
		*kilnBin = filepath.Join(dir, "kiln")
		build := exec.Command("go", "build", "-o", *kilnBin, "kiln/cmd/kiln")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		check(build.Run())
	}
	var results []result
	for i := 0; i < *repeat; i++ {
		r := run(*kilnBin, *n, *conc, *size, *domains, *reuse, *withDKIM, *workdir)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "run %d: %d/%d arrived in %.2fs = %.0f msg/s end to end (injection %.0f msg/s, ack p50 %.1f ms p99 %.1f ms); kiln cpu %.3f ms/msg, peak RSS %.1f MiB\n",
			i+1, r.Arrived, r.N, r.Seconds, r.MsgsPerSec, r.InjectRate, r.P50ms, r.P99ms, r.CPUms, r.PeakRSSMiB)
	}
	med := median(results)
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(map[string]any{"runs": results, "median": med, "cpus": runtime.NumCPU(), "dkim": *withDKIM})
		return
	}
	fmt.Printf("kiln relay: %d messages of %d bytes, %d sessions, %d domains, dkim=%v, %d run(s)\n", *n, *size, *conc, *domains, *withDKIM, *repeat)
	fmt.Printf("median: %.0f msg/s end to end, %.3f ms kiln CPU per message, peak RSS %.1f MiB, ack latency p50 %.1f ms p99 %.1f ms\n",
		med.MsgsPerSec, med.CPUms, med.PeakRSSMiB, med.P50ms, med.P99ms)
}

func run(kilnBin string, n, conc, size, domains int, reuse, withDKIM bool, workdir string) result {
	dir, err := os.MkdirTemp(workdir, "kiln-bench-")
	check(err)
	defer os.RemoveAll(dir)

	sink, err := smtpsink.New(smtpsink.Config{Addr: "127.0.0.1:0", TLS: smtpsink.TLSOff, Discard: true})
	check(err)
	defer sink.Close()

	submit, admin := freePort(), freePort()
	extra := ""
	if withDKIM {
		extra = dkimConfig(dir)
	}
	cfg := fmt.Sprintf(`data_dir = %q
[submission]
listen = ["127.0.0.1:%d"]
[admin]
listen = "127.0.0.1:%d"
[log]
level = "warn"
events = ""
[[route]]
domain = "*"
smarthost = %q
%s`, filepath.Join(dir, "data"), submit, admin, sink.Addr(), extra)
	cfgPath := filepath.Join(dir, "kiln.toml")
	check(os.WriteFile(cfgPath, []byte(cfg), 0o600))
	cmd := exec.Command(kilnBin, "serve", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	waitHealthy(fmt.Sprintf("127.0.0.1:%d", admin))

	doms := make([]string, domains)
	for i := range doms {
		doms[i] = fmt.Sprintf("dom%d.test", i+1)
	}
	perConn := 1
	if reuse {
		perConn = 0
	}
	cpu0 := procCPU(cmd.Process.Pid)
	start := time.Now()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Addr: fmt.Sprintf("127.0.0.1:%d", submit), Concurrency: conc, Messages: n, PerConn: perConn,
		Size: size, Domains: doms, FromDomain: "sender.test",
	})
	check(err)
	inject := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for sink.Stats().Messages < rep.Accepted && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	e2e := time.Since(start)
	cpu := procCPU(cmd.Process.Pid) - cpu0
	r := result{
		N: n, Seconds: e2e.Seconds(), MsgsPerSec: float64(sink.Stats().Messages) / e2e.Seconds(),
		InjectRate: float64(rep.Accepted) / inject.Seconds(),
		CPUms:      cpu.Seconds() * 1000 / float64(n),
		PeakRSSMiB: float64(procHWM(cmd.Process.Pid)) / 1024,
		P50ms:      float64(rep.Latency.P50) / 1e6,
		P99ms:      float64(rep.Latency.P99) / 1e6,
		Arrived:    sink.Stats().Messages,
	}
	if rep.Failed > 0 {
		fmt.Fprintf(os.Stderr, "  %d messages were refused: %v\n", rep.Failed, rep.Errors)
	}
	return r
}

// dkimConfig writes an RSA-2048 and an Ed25519 key for the sender domain and
// returns their [[dkim]] entries.
func dkimConfig(dir string) string {
	var b strings.Builder
	for _, k := range []struct {
		sel  string
		algo dkim.Algorithm
	}{{"rsa", dkim.RSA}, {"ed", dkim.Ed25519}} {
		priv, err := dkim.GenerateKey(k.algo, 2048)
		check(err)
		path := filepath.Join(dir, k.sel+".pem")
		check(dkim.WriteKeyFile(path, priv))
		fmt.Fprintf(&b, "[[dkim]]\ndomain = \"sender.test\"\nselector = %q\nkey = %q\n", k.sel, path)
	}
	return b.String()
}

func waitHealthy(addr string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	check(fmt.Errorf("kiln did not start"))
}

// procCPU is a process's user and system CPU time, from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procHWM is a process's peak resident set in KiB (VmHWM).
func procHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return v
		}
	}
	return 0
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func median(rs []result) result {
	sorted := append([]result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].MsgsPerSec < sorted[j].MsgsPerSec })
	return sorted[len(sorted)/2]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay benchmark:", err)
		os.Exit(1)
	}
}
