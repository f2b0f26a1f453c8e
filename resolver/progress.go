package resolver

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Progress is a snapshot of a server's work counters, for a liveness check (the systemd
// watchdog) that compares two snapshots taken some seconds apart. Taking one is
// goroutine-free, sends nothing and never waits on a lock the data path holds, so it still
// answers when the serving goroutines are wedged. An idle server never looks stalled: a
// stall needs work that waited through the whole interval without being taken.
type Progress struct {
	Read     uint64 // UDP datagrams taken from the socket since Start
	Queued   bool   // a datagram was waiting in the UDP socket's receive queue
	Running  int64  // queries being answered (UDP and TCP), rate-limited ones included
	Answered uint64 // queries whose handler returned since Start
}

// Progress returns the server's counters now. Before Start and after Close it is the zero
// Progress, which never looks stalled.
func (s *Server) Progress() Progress {
	p := Progress{Read: s.reads.Load(), Running: s.running.Load(), Answered: s.answered.Load()}
	if ucs := s.udp.Load(); ucs != nil {
		p.Queued = queuedAny(*ucs)
	}
	return p
}

// Stalled reports why the server made no progress from prev to p, or nil: datagrams waited
// in the socket at both snapshots and the read loop took none, or queries were being
// answered at both and none finished. The second can be a slow stub zone rather than a
// wedge only when every one of its servers times out (2 s each) for the whole interval,
// so a check interval of 15 s or more leaves room for seven dead servers.
func (p Progress) Stalled(prev Progress) error {
	if prev.Queued && p.Queued && p.Read == prev.Read {
		return errors.New("resolver: datagrams wait in the UDP socket and the read loop took none")
	}
	if prev.Running > 0 && p.Running > 0 && p.Answered == prev.Answered {
		return fmt.Errorf("resolver: %d queries are being answered and none finished", p.Running)
	}
	return nil
}

// queued reports whether a datagram waits in c's receive queue (SIOCINQ: the size of the
// next datagram, so an empty datagram reads as none, which only delays detection).
func queued(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return err == nil && n > 0
}
