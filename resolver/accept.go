package resolver

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/lnm-project/lnm/internal/acceptpace"
)

// pacedListener paces the TCP DNS server's accept loop. miekg/dns retries a temporary accept
// error at once, so a box out of file descriptors would spin a core on its TCP listener
// (faults case 19); this waits as the forwarder's loop does, logs the run once at its start
// and once when it ends, and counts the failures.
type pacedListener struct {
	net.Listener
	log    *slog.Logger
	done   chan struct{} // closed by Close: a waiting Accept returns at once
	closed atomic.Bool
	fails  atomic.Uint64

	pace acceptpace.Pacer // only Accept's goroutine touches it
}

func newPacedListener(ln net.Listener, log *slog.Logger) *pacedListener {
	return &pacedListener{Listener: ln, log: log, done: make(chan struct{})}
}

func (l *pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if n := l.pace.OK(); n > 0 {
			l.log.Warn("dns tcp: accepting again", "addr", l.Addr().String(), "failed_accepts", n)
		}
		return c, nil
	}
	if errors.Is(err, net.ErrClosed) {
		return nil, err
	}
	l.fails.Add(1)
	wait, first := l.pace.Failed()
	if first {
		l.log.Warn("dns tcp: accept failed; retrying, and logging again when it works", "addr", l.Addr().String(), "err", err)
	}
	select {
	case <-time.After(wait):
	case <-l.done:
	}
	return nil, err
}

func (l *pacedListener) Close() error {
	if l.closed.CompareAndSwap(false, true) {
		close(l.done)
	}
	return l.Listener.Close()
}
