package forwarder

import (
	"net/netip"
	"sync"
)

// Defaults for the caps on connections still waiting for their ClientHello. A flood of
// connections that never speak must not starve established streams or DNS (faults catalog
// item 10): past a cap, new connections are closed at once.
const (
	DefaultMaxPending       = 1024
	DefaultMaxPendingPerSrc = 64
)

// pendingLimiter counts connections that have not yet sent a full ClientHello, in all and per
// source address.
type pendingLimiter struct {
	max, maxPerSrc int

	mu    sync.Mutex
	total int
	bySrc map[netip.Addr]int
}

func newPendingLimiter(max, maxPerSrc int) *pendingLimiter {
	return &pendingLimiter{max: max, maxPerSrc: maxPerSrc, bySrc: map[netip.Addr]int{}}
}

// acquire reserves a slot for src and reports whether one was free.
func (p *pendingLimiter) acquire(src netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= p.max || p.bySrc[src] >= p.maxPerSrc {
		return false
	}
	p.total++
	p.bySrc[src]++
	return true
}

// release frees the slot acquire reserved.
func (p *pendingLimiter) release(src netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.bySrc[src]--; p.bySrc[src] <= 0 {
		delete(p.bySrc, src)
	}
}
