package forwarder

import (
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// spliceChunk is the most one copy call may move before the idle clock is checked again.
// Between checks the bytes move through the kernel (splice(2)) when both ends are TCP.
const spliceChunk = 1 << 20

// An idle stream must hold nothing but its two sockets: thousands of devices keep MQTT and
// HTTPS connections open for hours and send a few bytes a minute. Go's splice path takes a
// pipe (two descriptors, up to 1 MiB of kernel buffer) for the whole of a copy call, and a
// copy call waits for data while it holds it. So each direction first waits for its socket
// to have bytes queued (awaitData: the netpoller, no buffer, no pipe), then copies exactly
// what is queued, and the pipe goes back to the runtime's pool as soon as that is moved.

// halfCloser is a connection whose write side can be shut down alone (TCP FIN).
type halfCloser interface{ CloseWrite() error }

// pipe is one spliced stream: two directions and the idle state they share.
type pipe struct {
	client, upstream net.Conn
	idle             time.Duration

	mu        sync.Mutex
	quiet     [2]bool // direction had no byte during its last full idle period
	closeOnce sync.Once
	reason    allowlist.Reason // why the stream ended early (ReasonIdleTimeout, …); "" for EOF
}

// Directions, used as indexes into pipe.quiet.
const (
	up   = 0 // device → upstream
	down = 1 // upstream → device
)

// run copies both directions until both reach EOF, either side fails, or the stream has been
// idle in both directions. It returns the bytes moved each way.
func (p *pipe) run() (bytesUp, bytesDown int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); bytesUp = p.copyClientToUpstream() }()
	go func() { defer wg.Done(); bytesDown = p.copyUpstreamToClient() }()
	wg.Wait()
	p.closeBoth("")
	return bytesUp, bytesDown
}

// The two named copy functions make goroutine dumps readable.
func (p *pipe) copyClientToUpstream() int64 { return p.copy(up, p.upstream, p.client) }
func (p *pipe) copyUpstreamToClient() int64 { return p.copy(down, p.client, p.upstream) }

func (p *pipe) copy(dir int, dst, src net.Conn) int64 {
	var total int64
	rc := rawConn(src)
	for {
		src.SetReadDeadline(time.Now().Add(p.idle))
		n, err := p.copyQueued(dst, src, rc)
		total += n
		if err == nil {
			p.setQuiet(dir, false)
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if n > 0 {
				p.setQuiet(dir, false)
				continue
			}
			if !p.setQuiet(dir, true) {
				continue // the other direction is still moving
			}
			p.closeBoth(ReasonIdleTimeout)
			return total
		}
		if err == io.EOF {
			// Propagate the half-close and keep the other direction flowing.
			if hc, ok := dst.(halfCloser); ok && hc.CloseWrite() == nil {
				p.setQuiet(dir, true)
				return total
			}
		}
		p.closeBoth("")
		return total
	}
}

// copyQueued waits for src to have bytes (awaitData, when src is a socket) and copies what
// is queued, at most spliceChunk. io.CopyN hands dst.ReadFrom an *io.LimitedReader over src;
// *net.TCPConn recognizes that shape and splices in the kernel. An error is the wait's (a
// deadline, a closed conn) or the copy's; io.EOF when src has finished.
func (p *pipe) copyQueued(dst, src net.Conn, rc syscall.RawConn) (int64, error) {
	chunk := int64(spliceChunk)
	if rc != nil {
		queued, err := awaitData(rc)
		if err != nil {
			return 0, err
		}
		if queued > 0 {
			chunk = min(int64(queued), spliceChunk)
		}
		// queued 0: EOF or an error is pending, which the copy reports.
	}
	return io.CopyN(dst, src, chunk)
}

// setQuiet records a direction's state and reports whether both directions are now quiet.
// A direction that has reached EOF counts as quiet for good.
func (p *pipe) setQuiet(dir int, q bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quiet[dir] = q
	return p.quiet[up] && p.quiet[down]
}

// closeBoth ends the stream; the first caller's reason is kept.
func (p *pipe) closeBoth(reason allowlist.Reason) {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.reason = reason
		p.mu.Unlock()
		p.client.Close()
		p.upstream.Close()
	})
}

func (p *pipe) endReason() allowlist.Reason {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cmp.Or(p.reason, ReasonEOF)
}
