package mta

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener caps connections in total and per client address, and closes
// any connection that outlives the session limit however active it is (the
// per-command timeouts alone let a client dribble forever). Refused clients
// get a 421 reply before the close, so they know to come back later.
//
// Its connections also end the session at the first read timeout. go-smtp
// does not: a timeout in the middle of a command line hands it the part
// read so far as a line (bufio drops the error when it has data), which it
// answers "501 Bad command" before reading on, and a timeout inside DATA is
// answered but the rest of the body is then read as commands. So a read
// that times out says 421 4.4.2 and closes the connection itself.
type limitListener struct {
	net.Listener
	max, perIP int
	session    time.Duration

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int

	refused atomic.Int64
}

func newLimitListener(l net.Listener, max, perIP int, session time.Duration) *limitListener {
	return &limitListener{Listener: l, max: max, perIP: perIP, session: session, byIP: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.total >= l.max || l.byIP[ip] >= l.perIP {
			l.mu.Unlock()
			l.refused.Add(1)
			go refuse(c, "421 4.7.0 Too many connections, try again later\r\n")
			continue
		}
		l.total++
		l.byIP[ip]++
		l.mu.Unlock()
		lc := &limitConn{Conn: c, l: l, ip: ip}
		lc.timer = time.AfterFunc(l.session, func() {
			lc.hangUp("421 4.4.2 Session time limit reached, closing connection\r\n")
		})
		return lc, nil
	}
}

func refuse(c net.Conn, line string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(line))
	c.Close()
}

type limitConn struct {
	net.Conn
	l     *limitListener
	ip    netip.Addr
	timer *time.Timer
	once  sync.Once

	wmu    sync.Mutex  // one reply at a time on the wire
	tls    atomic.Bool // a TLS record went by: no more plain-text replies
	hungUp sync.Once
}

// Read reads from the client; a read that times out ends the session.
func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n >= 2 && b[0] == 0x16 && b[1] == 0x03 {
		// A TLS handshake record (implicit TLS or after STARTTLS); no SMTP
		// command starts with these bytes.
		c.tls.Store(true)
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.hangUp("421 4.4.2 Timeout waiting for the client, closing connection\r\n")
	}
	return n, err
}

func (c *limitConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(b)
}

// hangUp ends the session from kiln's side: it says why when the session is
// in plain text (inside TLS a plain line would be garbage) and closes.
func (c *limitConn) hangUp(line string) {
	c.hungUp.Do(func() {
		if !c.tls.Load() {
			c.wmu.Lock()
			c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Conn.Write([]byte(line))
			c.wmu.Unlock()
		}
		c.Close()
	})
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.timer.Stop()
		c.l.mu.Lock()
		c.l.total--
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return err
}

// remoteIP is the client's address, unmapped; the zero Addr when unknown.
func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
