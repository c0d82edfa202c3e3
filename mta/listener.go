package mta

import (
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
		lc.timer = time.AfterFunc(l.session, func() { c.Close() })
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
