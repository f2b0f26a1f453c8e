package resolver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// DNS over TCP, per client address: one device must not hold every TCP slot of the server
// (MaxTCPConns), and a listener out of file descriptors must not spin a core (faults catalog
// items 19 and 34).
const (
	// DefaultMaxTCPPerSource is the config's default for MaxTCPPerSource: a stub resolver
	// opens one or two connections at a time.
	DefaultMaxTCPPerSource = 16
	// DefaultChildFactor raises MaxTCPPerSource for Children: a whole level of devices sits
	// behind a child box's one address. The forwarder raises its limits by as much.
	DefaultChildFactor = 16
)

// tcpLimiter is the TCP listener of the server: it closes a connection at once when its
// source already holds its share and counts that for the summaries. It wraps the
// pacedListener, which paces retries after a failed accept.
type tcpLimiter struct {
	net.Listener
	perSrc, perChild int // zero: no limit
	children         allowlist.Prefixes
	log              *slog.Logger

	mu      sync.Mutex
	held    map[netip.Addr]int
	refused map[netip.Addr]*LimitEvent // since the last summary
	total   atomic.Uint64              // refused since New
	open    atomic.Int64               // connections admitted and not yet closed
}

func newTCPLimiter(ln net.Listener, cfg *Config, log *slog.Logger) *tcpLimiter {
	per := cfg.MaxTCPPerSource
	if per < 0 {
		per = 0
	}
	factor := cfg.ChildFactor
	if factor <= 0 {
		factor = DefaultChildFactor
	}
	return &tcpLimiter{
		Listener: ln, perSrc: per, perChild: per * factor, children: cfg.Children, log: log,
		held: map[netip.Addr]int{}, refused: map[netip.Addr]*LimitEvent{},
	}
}

// Accept returns the next connection whose source is within its share.
func (l *tcpLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err // paced by the listener below
		}
		src := netip.Addr{}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			src = a.AddrPort().Addr().Unmap()
		}
		if l.admit(src, time.Now()) {
			return &heldConn{Conn: c, l: l, src: src}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // nothing to say: free the socket at once
		}
		c.Close()
	}
}

// admit takes a slot for src, or counts it refused.
func (l *tcpLimiter) admit(src netip.Addr, now time.Time) bool {
	limit := l.perSrc
	if l.children.Contains(src) {
		limit = l.perChild
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit == 0 || l.held[src] < limit {
		l.held[src]++
		l.open.Add(1)
		return true
	}
	ev := l.refused[src]
	if ev == nil {
		ev = &LimitEvent{Client: src, From: now}
		l.refused[src] = ev
	}
	ev.TCPRefused++
	ev.Until = now
	l.total.Add(1)
	return false
}

func (l *tcpLimiter) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open.Add(-1)
	if l.held[src]--; l.held[src] <= 0 {
		delete(l.held, src)
	}
}

// summarize returns the refusals since the last call, one event per client.
func (l *tcpLimiter) summarize() []LimitEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LimitEvent
	for a, ev := range l.refused {
		out = append(out, *ev)
		delete(l.refused, a)
	}
	return out
}

// heldConn gives its source's slot back when closed, once.
type heldConn struct {
	net.Conn
	l      *tcpLimiter
	src    netip.Addr
	closed atomic.Bool
}

func (c *heldConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.src)
	}
	return c.Conn.Close()
}

// TCPRefused is how many TCP connections were closed at once since Start because their
// source held MaxTCPPerSource already.
func (s *Server) TCPRefused() uint64 {
	if l := s.tcpLim.Load(); l != nil {
		return l.total.Load()
	}
	return 0
}
