package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

// The 250 after DATA is written only after the message is on disk: under
// strace, between kiln's 354 and its "250 ... queued" there is an fdatasync
// (the body in the spool) and an msync (the store's synced commit). A kill -9
// test cannot show this, since the page cache outlives the process; the
// order of the system calls can.
func TestSyncBeforeAck(t *testing.T) {
	strace := needTool(t, "strace")
	w := newWorld(t)
	w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	sp, ap := freePort(t), freePort(t)
	cfg := w.config(sp, ap, "")
	trace := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(strace, "-f", "-qq", "-y", "-s", "64", "-e", "trace=fdatasync,fsync,msync,write,sendto,sendmsg", "-o", trace,
		kilnBin, "serve", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Signals to strace do not reach kiln: stop kiln itself (strace exits
	// with it).
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		if pid := childOf(cmd.Process.Pid); pid > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			t.Error("kiln under strace did not stop")
		}
	}
	defer stop()
	d := &daemon{submit: "127.0.0.1:" + itoa(sp)}
	waitUntil(t, "kiln under strace to start", 60*time.Second, func() bool {
		_, err := submit(d.submit, "app@sender.test", "warmup@dest.test", "<warm@e2e.test>")
		return err == nil
	})
	if _, err := submit(d.submit, "app@sender.test", "r@dest.test", "<traced@e2e.test>"); err != nil {
		t.Fatal(err)
	}
	stop()

	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go354 := regexp.MustCompile(`"354 `)
	ack := regexp.MustCompile(`"250 2\.0\.0 OK: queued as`)
	var seen354, checked int
	var datasync, msync bool
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case go354.MatchString(line):
			seen354++
			datasync, msync = false, false
		// A call strace splits across threads shows as "unfinished" and,
		// once it returns, "<... name resumed>": only a return counts.
		case completed(line, "fdatasync"):
			// The spool segment the body went to (-y prints the path;
			// a resumed line names no file, but its call line did).
			datasync = datasync || strings.Contains(line, "spool/seg-") || strings.Contains(line, "resumed")
		case completed(line, "msync"):
			msync = true
		case ack.MatchString(line):
			if seen354 == 0 {
				continue
			}
			checked++
			if !datasync || !msync {
				t.Errorf("a 250 was written before the message was synced (fdatasync seen: %v, msync seen: %v):\n%s", datasync, msync, line)
			}
		}
	}
	if checked < 2 {
		t.Fatalf("found %d acknowledgements in the trace, want 2", checked)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// completed reports whether a strace line shows the system call returning.
func completed(line, call string) bool {
	if strings.Contains(line, "<... "+call+" resumed>") {
		return true
	}
	return strings.Contains(line, call+"(") && !strings.Contains(line, "unfinished")
}

// childOf returns the first child process of pid (strace's tracee).
func childOf(pid int) int {
	tasks, _ := filepath.Glob(filepath.Join("/proc", itoa(pid), "task", "*", "children"))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			n, _ := strconv.Atoi(fields[0])
			return n
		}
	}
	return 0
}
