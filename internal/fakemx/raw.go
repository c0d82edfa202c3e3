package fakemx

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Raw is a TCP server on loopback that hands each connection to a Go
// function, for peers that misbehave in ways an SMTP library will not: no
// greeting, garbage or endless replies, replies spread byte by byte, silence
// after accepting the connection.
type Raw struct {
	ln      net.Listener
	handler func(*RawConn)

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	n     int
	wg    sync.WaitGroup
	done  chan struct{}
	once  sync.Once
}

// RawConn is one connection to a Raw server, with line-oriented helpers.
// A handler may ignore them and use the net.Conn directly.
type RawConn struct {
	net.Conn
	R    *bufio.Reader
	done <-chan struct{}
}

// StartRaw starts a Raw server on 127.0.0.1 that runs handler for every
// connection (each in its own goroutine) and closes the connection when the
// handler returns. It is stopped when the test ends: connections are closed
// and handlers waited for.
func StartRaw(tb testing.TB, handler func(*RawConn)) *Raw {
	tb.Helper()
	r, err := ListenRaw("127.0.0.1:0", handler)
	if err != nil {
		tb.Fatalf("fakemx: %v", err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// ListenRaw starts a Raw server on addr.
func ListenRaw(addr string, handler func(*RawConn)) (*Raw, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Raw{ln: ln, handler: handler, conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	go r.serve()
	return r, nil
}

func (r *Raw) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		select {
		case <-r.done:
			r.mu.Unlock()
			c.Close()
			return
		default:
		}
		r.conns[c] = struct{}{}
		r.n++
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			defer func() {
				c.Close()
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
			}()
			r.handler(&RawConn{Conn: c, R: bufio.NewReader(c), done: r.done})
		}()
	}
}

// Addr is the host:port the server listens on.
func (r *Raw) Addr() string { return r.ln.Addr().String() }

// Conns reports how many connections were accepted.
func (r *Raw) Conns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Close stops accepting, closes every connection and waits for the handlers.
func (r *Raw) Close() error {
	r.once.Do(func() {
		r.mu.Lock()
		close(r.done)
		r.ln.Close()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return nil
}

// Send writes each line followed by CRLF, in one write.
func (c *RawConn) Send(lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	_, err := io.WriteString(c.Conn, b.String())
	return err
}

// ReadLine reads one line and returns it without its line ending.
func (c *RawConn) ReadLine() (string, error) {
	l, err := c.R.ReadString('\n')
	if err != nil {
		return l, err
	}
	return strings.TrimRight(l, "\r\n"), nil
}

// Expect reads one line and fails unless it starts with prefix
// (case-insensitively).
func (c *RawConn) Expect(prefix string) (string, error) {
	l, err := c.ReadLine()
	if err != nil {
		return l, err
	}
	if !strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
		return l, errors.New("fakemx: got " + l + ", want " + prefix)
	}
	return l, nil
}

// ReadData reads a DATA body up to and including the CRLF.CRLF that ends it
// and returns the bytes exactly as sent (still dot-stuffed, the final dot
// line removed).
func (c *RawConn) ReadData() ([]byte, error) {
	var buf bytes.Buffer
	for {
		l, err := c.R.ReadBytes('\n')
		if err != nil {
			return buf.Bytes(), err
		}
		if bytes.Equal(l, []byte(".\r\n")) && (buf.Len() == 0 || bytes.HasSuffix(buf.Bytes(), []byte("\r\n"))) {
			return buf.Bytes(), nil
		}
		buf.Write(l)
	}
}

// Quiet reports whether the peer sends nothing more within d: how a test
// checks that a client waits for a reply instead of pipelining.
func (c *RawConn) Quiet(d time.Duration) bool {
	if c.R.Buffered() > 0 {
		return false
	}
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.R.Peek(1)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Hang blocks until the peer closes the connection or the server stops,
// reading and discarding whatever arrives: a peer that never answers.
func (c *RawConn) Hang() {
	io.Copy(io.Discard, c.R)
}

// Silent is a handler that accepts the connection and never sends a byte.
func Silent(c *RawConn) { c.Hang() }

// Garbage returns a handler that sends text as is (no line ending added)
// and then hangs.
func Garbage(text string) func(*RawConn) {
	return func(c *RawConn) {
		io.WriteString(c.Conn, text)
		c.Hang()
	}
}
