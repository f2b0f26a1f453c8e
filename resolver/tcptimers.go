package resolver

import (
	"net"
	"time"

	"github.com/miekg/dns"
)

// DNS over TCP keeps a connection only while it is useful (faults catalog case 33, RFC 7766
// §6.2.3): a client gets tcpTimers.first for its first message and tcpTimers.idle between
// messages, and both shrink as the server's TCP connections fill, so that silent or slow
// clients cannot keep the table full while others wait in the backlog (Unbound does the same
// past half of incoming-num-tcp).

// tcpTimers are the two read timers of a DNS TCP connection. The zero value has no timers;
// Server uses defaultTCPTimers.
type tcpTimers struct {
	first time.Duration // from accept to the end of the first message
	idle  time.Duration // from the end of one message to the end of the next
}

// defaultTCPTimers are the timers of a server whose TCP connections are at most half full.
var defaultTCPTimers = tcpTimers{first: tcpReadTimeout, idle: tcpIdleTimeout}

// tcpShrinkFloor is how far the timers shrink when every TCP slot is taken: to a tenth.
const tcpShrinkFloor = 10

// tcpTimeouts returns the timers for a connection that starts a read while open connections
// are held out of max. Up to half of max they are base; past it they shrink linearly, to
// base/tcpShrinkFloor when the table is full. A max of zero or less (no bound) keeps base.
func tcpTimeouts(base tcpTimers, open, max int) tcpTimers {
	if max <= 0 || 2*open <= max {
		return base
	}
	if open > max {
		open = max
	}
	// over is how far past half the table is, from 0 (half) to half (full).
	half := max / 2
	over, span := open-half, max-half
	scale := func(d time.Duration) time.Duration {
		floor := d / tcpShrinkFloor
		return d - (d-floor)*time.Duration(over)/time.Duration(span)
	}
	return tcpTimers{first: scale(base.first), idle: scale(base.idle)}
}

// timedTCPReader reads one connection's messages under tcpTimers: miekg/dns makes one per
// connection (DecorateReader). The deadline is set once when a read of a message starts and
// holds until the whole message is in, so bytes that trickle in do not extend it: only a full
// message starts the next (idle) timer. The timers are taken from load at each read.
type timedTCPReader struct {
	dns.Reader
	base tcpTimers
	load func() (open, max int) // nil: never shrink
	read bool                   // a first message has been read
}

// ReadTCP reads the next message, ignoring miekg/dns's own timeout.
func (r *timedTCPReader) ReadTCP(conn net.Conn, _ time.Duration) ([]byte, error) {
	t := r.base
	if r.load != nil {
		open, max := r.load()
		t = tcpTimeouts(r.base, open, max)
	}
	timeout := t.first
	if r.read {
		timeout = t.idle
	}
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil {
		r.read = true
	}
	return m, err
}

// decorateTCPReader is the TCP server's DecorateReader: timers under load, then the
// check for messages too short to be DNS (tcpReader).
func (s *Server) decorateTCPReader(r dns.Reader) dns.Reader {
	var load func() (int, int)
	if l := s.tcpLim.Load(); l != nil && s.cfg.MaxTCPConns > 0 {
		load = func() (int, int) { return int(l.open.Load()), s.cfg.MaxTCPConns }
	}
	return tcpReader{&timedTCPReader{Reader: r, base: s.tcpTimers, load: load}}
}
