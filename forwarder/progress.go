package forwarder

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Progress is a snapshot of a forwarder's accept loops, for a liveness check (the systemd
// watchdog) that compares two snapshots taken some seconds apart. Taking one is
// goroutine-free, connects to nothing (so it writes no audit record) and takes no lock the
// data path holds, so it still answers when the accept loops are wedged. An idle forwarder
// never looks stalled: a stall needs connections that waited in the kernel's accept queue
// through the whole interval without being taken.
type Progress struct {
	Accepts uint64 // Accept calls that returned, errors included, since Start
	Backlog int    // connections waiting in the accept queues of the listeners now
}

// Progress returns the forwarder's counters now.
func (f *Forwarder) Progress() Progress {
	p := Progress{Accepts: f.accepts.Load()}
	if lns := f.live.Load(); lns != nil {
		for _, ln := range *lns {
			p.Backlog += backlog(ln)
		}
	}
	return p
}

// Stalled reports why the accept loops made no progress from prev to p, or nil. A loop
// that backs off on an error (a full descriptor table) still counts its tries, so a box
// out of descriptors is busy, not stalled.
func (p Progress) Stalled(prev Progress) error {
	if prev.Backlog > 0 && p.Backlog > 0 && p.Accepts == prev.Accepts {
		return errors.New("forwarder: connections wait in the accept queue and no accept loop took one")
	}
	return nil
}

// Listen returns the address the forwarder's ports are bound on; it never changes.
func (f *Forwarder) Listen() netip.Addr { return f.cfg.Listen }

// publishListeners makes the current listeners visible to Progress, which must not take
// f.mu. f.mu is held.
func (f *Forwarder) publishListeners() {
	lns := make([]net.Listener, 0, len(f.listeners))
	for _, ln := range f.listeners {
		lns = append(lns, ln)
	}
	f.live.Store(&lns)
}

// backlog returns how many connections wait in a listening socket's accept queue: for a
// socket in LISTEN state, Linux reports the queue length in tcpi_unacked.
func backlog(ln net.Listener) int {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return 0
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			n = int(info.Unacked)
		}
	})
	return n
}
