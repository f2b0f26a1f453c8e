package forwarder

import (
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/lnm-project/lnm/allowlist"
)

// spliceChunk is how much one copy call may move before the idle clock is checked again.
// Between checks the bytes move through the kernel (splice(2)) when both ends are TCP.
const spliceChunk = 1 << 20

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
	for {
		src.SetReadDeadline(time.Now().Add(p.idle))
		// io.CopyN hands dst.ReadFrom an *io.LimitedReader over src; *net.TCPConn recognizes
		// that shape and splices in the kernel.
		n, err := io.CopyN(dst, src, spliceChunk)
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
