package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

// benchMessage is about the relay benchmark's message: 4 KB of body in
// 76-byte lines plus a few headers.
func benchMessage() []byte {
	var b bytes.Buffer
	b.WriteString("From: sender@bench.test\r\nTo: rcpt@bench.test\r\nSubject: benchmark\r\nMessage-ID: <1@bench.test>\r\n\r\n")
	line := bytes.Repeat([]byte("x"), 74)
	for b.Len() < 4096+150 {
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// sink is the smallest SMTP server that pipelines: it answers without
// looking, so a benchmark against it measures the client.
func sink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReaderSize(c, 64<<10)
				w := bufio.NewWriter(c)
				w.WriteString("220 sink ESMTP\r\n")
				w.Flush()
				for {
					l, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					switch {
					case bytes.HasPrefix(l, []byte("EHLO")):
						w.WriteString("250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
					case bytes.HasPrefix(l, []byte("DATA")):
						w.WriteString("354 go\r\n")
						w.Flush()
						for {
							l, err := r.ReadSlice('\n')
							if err != nil {
								return
							}
							if len(l) == 3 && l[0] == '.' {
								break
							}
						}
						w.WriteString("250 2.0.0 ok\r\n")
					case bytes.HasPrefix(l, []byte("QUIT")):
						w.WriteString("221 bye\r\n")
						w.Flush()
						return
					default:
						w.WriteString("250 ok\r\n")
					}
					if r.Buffered() == 0 {
						w.Flush()
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func benchSend(b *testing.B, addr string, conns int) {
	msg := benchMessage()
	d := &Dialer{LocalName: "out.kiln.test", TLS: TLSNone}
	clients := make([]*Client, conns)
	for i := range clients {
		c, err := d.Dial(context.Background(), addr, "sink")
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		defer c.Close()
	}
	rcpts := []string{"rcpt@bench.test"}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	per := b.N / conns
	for i, c := range clients {
		n := per
		if i == 0 {
			n += b.N % conns
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				res := c.Send(context.Background(), "sender@bench.test", rcpts, msg)
				if res.Rcpts[0].Code != 250 {
					b.Errorf("%+v", res)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	// CPU per message (this process: client and server together) is the
	// figure that holds when other work shares the machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSendSink measures the client against a server that costs almost
// nothing: one connection, then eight in parallel.
func BenchmarkSendSink(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchSend(b, sink(b), conns) })
	}
}

// BenchmarkSendFakeMX measures client and go-smtp server together.
func BenchmarkSendFakeMX(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			mx := fakemx.Start(b, fakemx.Config{TLS: fakemx.TLSOff, Discard: true})
			benchSend(b, mx.Addr(), conns)
		})
	}
}
