package resolver

import (
	"errors"
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
// source already holds its share, counts that for the summaries, and paces the retries
// after a failed accept (5 ms doubling to 1 s, as net/http does): miekg/dns retries a
// temporary error, such as running out of file descriptors, at once and forever.
type tcpLimiter struct {
	net.Listener
	perSrc, perChild int // zero: no limit
	children         allowlist.Prefixes
	log              *slog.Logger
	stop             chan struct{} // closed by Close: a pending retry gives up
	stopOnce         sync.Once

	// Only the server's one accept loop reads and writes these.
	delay time.Duration
	fails int // failures since the last accept that worked

	mu      sync.Mutex
	held    map[netip.Addr]int
	refused map[netip.Addr]*LimitEvent // since the last summary
	total   atomic.Uint64              // refused since New
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
		stop: make(chan struct{}), held: map[netip.Addr]int{}, refused: map[netip.Addr]*LimitEvent{},
	}
}

// Accept returns the next connection whose source is within its share.
func (l *tcpLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if l.fails++; l.fails == 1 {
				l.log.Warn("dns tcp accept failed; retrying, and logging again when it works", "err", err)
			}
			l.delay = min(max(2*l.delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(l.delay):
			case <-l.stop:
			}
			return nil, err
		}
		if l.fails > 0 {
			l.log.Warn("dns tcp accepting again", "failed_accepts", l.fails)
		}
		l.fails, l.delay = 0, 0
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

// Close closes the listener and ends a retry's wait.
func (l *tcpLimiter) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	return l.Listener.Close()
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
